//! `burrow version`, with `--format` as Podman's and Docker's (`{{.Client.Version}}`,
//! `{{.Server.Version}}`: scripts written for either read these). There is no server: both
//! describe this binary.

use serde_json::json;

use super::format::{self, Format};

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// Change the output format to JSON or a Go template
    #[arg(short, long)]
    format: Option<String>,
}

pub fn version(args: VersionArgs) -> anyhow::Result<i32> {
    let os_arch = format!(
        "linux/{}",
        std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64")
    );
    let Some(template) = args.format else {
        println!("Version:      {}", env!("CARGO_PKG_VERSION"));
        println!("OS/Arch:      {os_arch}");
        return Ok(0);
    };
    let side = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "APIVersion": env!("CARGO_PKG_VERSION"),
        "OsArch": os_arch,
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
    });
    let row = json!({"Client": side.clone(), "Server": side});
    let format = Format::parse(&template)?;
    if matches!(format, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&row)?);
        return Ok(0);
    }
    format::print(&format, &[row], &[])?;
    Ok(0)
}
