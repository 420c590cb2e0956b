//! burrow-testimg: writes the test images of `burrow_tests::image_gen` for scripts (hack/setup.sh,
//! bench/start.sh) and for manual checks with skopeo.

use std::path::Path;
use std::process::ExitCode;

use burrow_tests::image_gen::{self, Compression, ImageDigests};

const USAGE: &str = "usage:
  burrow-testimg busybox-rootfs OUT.tar                      rootfs tarball for `burrow import`
  burrow-testimg sample-oci-layout DIR [--plain]             3-layer sample image as an OCI layout
  burrow-testimg sample-oci-archive OUT.tar [--plain]        ... as an OCI archive
  burrow-testimg sample-docker-archive OUT.tar REPO:TAG [--plain]   ... as a `docker save` archive
Layers are gzip-compressed unless --plain is given. Digests are printed as JSON.";

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let plain = args.iter().any(|a| a == "--plain");
    args.retain(|a| a != "--plain");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match run(&args, plain) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burrow-testimg: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[&str], plain: bool) -> Result<(), String> {
    let sample = || {
        let mut spec = image_gen::sample_image().map_err(|e| e.to_string())?;
        if plain {
            spec.compression = Compression::None;
        }
        Ok::<_, String>(spec)
    };
    let digests = match args {
        ["busybox-rootfs", out] => {
            return image_gen::busybox_rootfs_tar(Path::new(out)).map_err(|e| format!("{out}: {e}"));
        }
        ["sample-oci-layout", dir] => sample()?.write_oci_layout(Path::new(dir)),
        ["sample-oci-archive", out] => sample()?.write_oci_archive(Path::new(out)),
        ["sample-docker-archive", out, tag] => sample()?.write_docker_archive(Path::new(out), tag),
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return Ok(());
        }
        _ => return Err(format!("bad arguments\n{USAGE}")),
    }
    .map_err(|e| e.to_string())?;
    print_digests(&digests);
    Ok(())
}

fn print_digests(d: &ImageDigests) {
    let v = serde_json::json!({
        "manifest": d.manifest, "config": d.config, "layers": d.layers, "diff_ids": d.diff_ids,
    });
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
}
