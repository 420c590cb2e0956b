//! `burrow import TARBALL [REFERENCE]`: a root filesystem tarball becomes a one-layer image.

use std::fs::File;
use std::io::Read;

use anyhow::Context as _;
use burrow_storage::normalize_name;
use serde_json::{json, Map, Value};

use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Apply the following possible instructions to the created image: CMD | ENTRYPOINT | ENV | EXPOSE | LABEL | STOPSIGNAL | USER | VOLUME | WORKDIR
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Suppress output
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Path to the tarball, or - for standard input
    tarball: String,
    /// Name of the new image
    reference: Option<String>,
}

pub fn import(args: ImportArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    let name = args.reference.as_deref().map(normalize_name).transpose()?;
    let mut image_config = Map::new();
    image_config.insert(
        "Env".into(),
        json!([format!("PATH={}", burrow_userns::process::DEFAULT_PATH)]),
    );
    for change in &args.change {
        apply_change(&mut image_config, change)?;
    }
    let input: Box<dyn Read> = if args.tarball == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(&args.tarball).with_context(|| format!("opening {}", args.tarball))?)
    };
    let mut engine = Engine::open(global)?;
    let limits = engine.id_limits();
    let created = crate::commands::rfc3339(std::time::SystemTime::now());
    let make_config = |layer: &str| {
        let mut history =
            json!({"created": created, "created_by": format!("/bin/sh -c #(nop) ADD file:{layer} in /")});
        if let Some(m) = &args.message {
            history["comment"] = json!(m);
        }
        json!({
            "created": created,
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            "os": "linux",
            "config": image_config,
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer}")]},
            "history": [history],
        })
        .to_string()
    };
    let image = engine
        .store
        .import_image(input, limits, make_config, name.as_slice())
        .with_context(|| format!("importing {}", args.tarball))?;
    // Podman prints the id with or without -q; -q only silences progress, which we have none of.
    let _ = args.quiet;
    println!("{}", image.id);
    Ok(0)
}

/// Applies one `--change` (`CMD ["sh"]`, `CMD=sh -c x`, `ENV=A=b`, ...) to an image config.
pub(super) fn apply_change(config: &mut Map<String, Value>, change: &str) -> anyhow::Result<()> {
    let split = change
        .find(['=', ' '])
        .ok_or_else(|| anyhow::anyhow!("invalid change {change:?}: expected INSTRUCTION VALUE"))?;
    let (instruction, value) = (change[..split].to_ascii_uppercase(), change[split + 1..].trim());
    // Exec form is a JSON array; shell form runs through /bin/sh -c, as in a Dockerfile.
    let command = || -> Value {
        serde_json::from_str::<Vec<String>>(value)
            .map(|v| json!(v))
            .unwrap_or_else(|_| json!(["/bin/sh", "-c", value]))
    };
    match instruction.as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command());
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command());
        }
        "ENV" => {
            let (k, v) = value.split_once(['=', ' ']).ok_or_else(|| anyhow::anyhow!("invalid ENV {value:?}: expected KEY=VALUE"))?;
            let env = config.entry("Env").or_insert_with(|| json!([]));
            if let Some(items) = env.as_array_mut() {
                items.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&format!("{k}="))));
                items.push(json!(format!("{k}={v}")));
            }
        }
        "WORKDIR" => {
            config.insert("WorkingDir".into(), json!(value));
        }
        "USER" => {
            config.insert("User".into(), json!(value));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(value));
        }
        "LABEL" => {
            let (k, v) = value.split_once('=').ok_or_else(|| anyhow::anyhow!("invalid LABEL {value:?}: expected KEY=VALUE"))?;
            let labels = config.entry("Labels").or_insert_with(|| json!({}));
            labels[k] = json!(v.trim_matches('"'));
        }
        "EXPOSE" => {
            let port = if value.contains('/') { value.to_string() } else { format!("{value}/tcp") };
            let ports = config.entry("ExposedPorts").or_insert_with(|| json!({}));
            ports[port] = json!({});
        }
        "VOLUME" => {
            let volumes = config.entry("Volumes").or_insert_with(|| json!({}));
            let paths = serde_json::from_str::<Vec<String>>(value).unwrap_or_else(|_| vec![value.to_string()]);
            for p in paths {
                volumes[p] = json!({});
            }
        }
        other => anyhow::bail!("invalid change {change:?}: {other} is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes_in_both_spellings() {
        let mut c = Map::new();
        apply_change(&mut c, r#"CMD ["sh", "-c", "echo hi"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT=/bin/tini --").unwrap();
        apply_change(&mut c, "ENV=A=b").unwrap();
        apply_change(&mut c, "ENV A=c").unwrap();
        apply_change(&mut c, "WORKDIR /srv").unwrap();
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/tini --"]));
        assert_eq!(c["Env"], json!(["A=c"]));
        assert_eq!(c["WorkingDir"], json!("/srv"));
        assert!(apply_change(&mut c, "BOGUS x")
            .unwrap_err()
            .to_string()
            .contains("BOGUS"));
        assert!(apply_change(&mut c, "CMD").is_err());
    }
}
