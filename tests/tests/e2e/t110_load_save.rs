//! `load` and `save`: docker and OCI archives (gzip or plain, from a file or stdin), OCI layouts,
//! running what was loaded (whiteouts, owners, setuid, hard links, FIFOs), digest-stable round
//! trips, interoperability with skopeo, and corrupted archives that leave the store as it was.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use burrow_tests::image_gen::{sample_image, Compression, ImageDigests};
use burrow_tests::TestEnv;
use serde_json::Value;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn inspect(env: &TestEnv, image: &str) -> Value {
    let out = env.run(&["image", "inspect", image]);
    let v: Value = serde_json::from_str(&out.success().stdout).unwrap();
    v[0].clone()
}

/// What a container of the sample image sees of the files its layers made.
fn check_sample_rootfs(env: &TestEnv, image: &str) {
    let script = "test ! -e /etc/motd && echo motd-gone; \
                  ls /opt/data | tr '\\n' ' '; echo; \
                  cat /opt/keep; \
                  stat -c '%a %u:%g' /opt/suid /opt/suid-target /home/user/owned-by-1000; \
                  test -p /opt/fifo && echo fifo; \
                  test /opt/hardlink -ef /opt/suid-target && echo hardlinked; \
                  readlink /opt/link";
    let out = env.run(&["run", "--rm", image, "sh", "-c", script]);
    assert_eq!(
        out.success().stdout,
        "motd-gone\nc \nkeep\n4755 0:0\n644 1000:1000\n640 1000:1000\nfifo\nhardlinked\nkeep\n",
        "{out}"
    );
}

#[test]
fn loads_docker_and_oci_archives_and_layouts_and_runs_them() {
    let env = TestEnv::new();
    let dir = env.home();
    let mut cases: Vec<(String, String, ImageDigests)> = Vec::new();
    for (i, compression) in [Compression::Gzip, Compression::None].into_iter().enumerate() {
        let mut spec = sample_image().unwrap();
        spec.compression = compression;
        let docker = dir.join(format!("d{i}.tar"));
        let d = spec
            .write_docker_archive(&docker, &format!("docker{i}:v1"))
            .unwrap();
        cases.push((p(&docker).into(), format!("localhost/docker{i}:v1"), d));
        spec.ref_name = Some(format!("localhost/oci{i}:v1"));
        let oci = dir.join(format!("o{i}.tar"));
        let d = spec.write_oci_archive(&oci).unwrap();
        cases.push((p(&oci).into(), format!("localhost/oci{i}:v1"), d));
    }
    let mut spec = sample_image().unwrap();
    spec.ref_name = Some("layout".into());
    let layout = dir.join("layout");
    let d = spec.write_oci_layout(&layout).unwrap();
    cases.push((p(&layout).into(), "localhost/layout:latest".into(), d));
    for (input, name, digests) in &cases {
        let out = env.run(&["load", "-i", input]);
        assert_eq!(out.success().stdout, format!("Loaded image: {name}\n"), "{out}");
        let i = inspect(&env, name);
        assert_eq!(i["Id"], digests.config.trim_start_matches("sha256:"), "{name}");
        assert_eq!(
            i["RootFS"]["Layers"],
            serde_json::json!(digests.diff_ids),
            "{name}"
        );
        if let Some(m) = &digests.manifest {
            assert_eq!(&i["Digest"], m, "{name}: the OCI manifest's digest");
        }
    }
    // Every case is the same image: one id (which -q shows once) with five names.
    let names = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(names.success().stdout.lines().count(), cases.len(), "{names}");
    let ids = env.run(&["images", "-q", "--no-trunc"]);
    assert_eq!(ids.success().stdout, format!("{}\n", cases[0].2.config), "{ids}");
    check_sample_rootfs(&env, "localhost/docker0:v1");
}

#[test]
fn loads_from_stdin_and_gzip_files_and_multi_image_archives() {
    let env = TestEnv::new();
    let archive = env.home().join("d.tar");
    sample_image()
        .unwrap()
        .write_docker_archive(&archive, "stdin:1")
        .unwrap();
    let data = fs::read(&archive).unwrap();
    let out = env.run_with_stdin(&["load"], &data);
    assert_eq!(out.success().stdout, "Loaded image: localhost/stdin:1\n", "{out}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&data).unwrap();
    let gzipped = env.home().join("d.tar.gz");
    fs::write(&gzipped, gz.finish().unwrap()).unwrap();
    env.run(&["rmi", "stdin:1"]).success();
    let out = env.run(&["load", "-i", p(&gzipped)]);
    assert_eq!(out.success().stdout, "Loaded image: localhost/stdin:1\n", "{out}");

    // -m: two images (one with two names) in one docker archive.
    env.import_busybox("bb");
    env.run(&["tag", "stdin:1", "more:2"]).success();
    let multi = env.home().join("multi.tar");
    env.run(&["save", "-m", "-o", p(&multi), "stdin:1", "more:2", "bb"])
        .success();
    env.run(&["rmi", "-a", "-f"]).success();
    let out = env.run(&["load", "-i", p(&multi)]);
    let mut loaded: Vec<&str> = out.success().stdout.lines().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "Loaded image: localhost/bb:latest",
            "Loaded image: localhost/more:2",
            "Loaded image: localhost/stdin:1"
        ]
    );
    check_sample_rootfs(&env, "more:2");
    let out = env.run(&[
        "save",
        "--format",
        "oci-archive",
        "-m",
        "-o",
        p(&multi),
        "bb",
        "more:2",
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("only docker-archive"), "{out}");
}

#[test]
fn save_and_load_keep_ids_and_layer_digests() {
    let env = TestEnv::new();
    let archive = env.home().join("in.tar");
    let d = sample_image().unwrap().write_oci_archive(&archive).unwrap();
    env.run(&["load", "-i", p(&archive)]).success();
    let name = "localhost/latest:latest";
    let first = inspect(&env, name);
    let outputs = [
        ("docker-archive", env.home().join("s.docker.tar")),
        ("oci-archive", env.home().join("s.oci.tar")),
        ("oci-dir", env.home().join("s.ocidir")),
    ];
    for (format, out) in &outputs {
        env.run(&["save", "--format", format, "-o", p(out), name])
            .success();
    }
    // Saving again gives the same bytes: layers are rebuilt exactly.
    let again = env.home().join("again.tar");
    env.run(&["save", "--format", "oci-archive", "-o", p(&again), name])
        .success();
    assert_eq!(fs::read(&again).unwrap(), fs::read(&outputs[1].1).unwrap());
    let mut digest_after_oci = None;
    for (format, out) in &outputs {
        env.run(&["rmi", "-a", "-f"]).success();
        let loaded = env.run(&["load", "-i", p(out)]);
        assert_eq!(
            loaded.success().stdout,
            format!("Loaded image: {name}\n"),
            "{format}: {loaded}"
        );
        let i = inspect(&env, name);
        assert_eq!(i["Id"], first["Id"], "{format}");
        assert_eq!(i["RootFS"]["Layers"], serde_json::json!(d.diff_ids), "{format}");
        if *format != "docker-archive" {
            // Both OCI outputs carry the same manifest (uncompressed layers, digest = diff_id).
            let digest = i["Digest"].clone();
            assert_eq!(
                digest_after_oci.get_or_insert(digest.clone()),
                &digest,
                "{format}"
            );
        }
        check_sample_rootfs(&env, name);
    }
    // A second round trip through the OCI archive keeps the manifest digest too.
    let second = env.home().join("second.tar");
    env.run(&["save", "--format", "oci-archive", "-o", p(&second), name])
        .success();
    assert_eq!(fs::read(&second).unwrap(), fs::read(&outputs[1].1).unwrap());
    // Docker archives keep the digest Podman and skopeo compute for them.
    env.run(&["rmi", "-a", "-f"]).success();
    env.run(&["load", "-i", p(&outputs[0].1)]).success();
    let docker_digest = inspect(&env, name)["Digest"].clone();
    env.run(&["save", "-o", p(&second), name]).success();
    env.run(&["rmi", "-a", "-f"]).success();
    env.run(&["load", "-i", p(&second)]).success();
    assert_eq!(inspect(&env, name)["Digest"], docker_digest);
}

fn skopeo_available() -> bool {
    let found = std::process::Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: skopeo is not installed");
    }
    found
}

#[test]
fn skopeo_reads_what_burrow_saves_and_burrow_loads_what_skopeo_writes() {
    if !skopeo_available() {
        return;
    }
    let env = TestEnv::new();
    let archive = env.home().join("in.tar");
    let d = sample_image()
        .unwrap()
        .write_docker_archive(&archive, "sample:v1")
        .unwrap();
    env.run(&["load", "-i", p(&archive)]).success();
    let skopeo = |args: &[&str]| {
        let out = burrow_tests::run_bounded(
            env.command("skopeo", args),
            None,
            std::time::Duration::from_secs(120),
        )
        .unwrap();
        assert_eq!(out.code, 0, "{out}");
        out.stdout
    };
    let docker = env.home().join("s.docker.tar");
    let oci = env.home().join("s.oci.tar");
    let dir = env.home().join("s.oci");
    env.run(&["save", "-o", p(&docker), "sample:v1"]).success();
    env.run(&["save", "--format", "oci-archive", "-o", p(&oci), "sample:v1"])
        .success();
    env.run(&["save", "--format", "oci-dir", "-o", p(&dir), "sample:v1"])
        .success();
    for reference in [
        format!("docker-archive:{}", p(&docker)),
        format!("oci-archive:{}", p(&oci)),
        format!("oci:{}", p(&dir)),
    ] {
        let v: Value = serde_json::from_str(&skopeo(&["inspect", &reference])).unwrap();
        assert_eq!(v["Layers"], serde_json::json!(d.diff_ids), "{reference}");
        assert_eq!(v["Labels"]["org.burrow.test"], "sample", "{reference}");
        let config: Value = serde_json::from_str(&skopeo(&["inspect", "--config", &reference])).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            serde_json::json!(d.diff_ids),
            "{reference}"
        );
    }
    // skopeo's docker archives, OCI archives and OCI layouts (gzip layers, its own manifests).
    env.run(&["rmi", "-a", "-f"]).success();
    let sk_docker = env.home().join("sk.docker.tar");
    let sk_oci = env.home().join("sk.oci.tar");
    let sk_dir = env.home().join("sk.oci");
    skopeo(&[
        "copy",
        &format!("oci:{}", p(&dir)),
        &format!("docker-archive:{}:localhost/sk:docker", p(&sk_docker)),
    ]);
    skopeo(&[
        "copy",
        &format!("docker-archive:{}", p(&docker)),
        &format!("oci-archive:{}:localhost/sk:oci", p(&sk_oci)),
    ]);
    skopeo(&[
        "copy",
        &format!("docker-archive:{}", p(&docker)),
        &format!("oci:{}:localhost/sk:dir", p(&sk_dir)),
    ]);
    for (input, name) in [
        (&sk_docker, "localhost/sk:docker"),
        (&sk_oci, "localhost/sk:oci"),
        (&sk_dir, "localhost/sk:dir"),
    ] {
        let out = env.run(&["load", "-i", p(input)]);
        assert_eq!(out.success().stdout, format!("Loaded image: {name}\n"), "{out}");
        assert_eq!(
            inspect(&env, name)["RootFS"]["Layers"],
            serde_json::json!(d.diff_ids)
        );
    }
    check_sample_rootfs(&env, "localhost/sk:oci");
}

/// Rewrites the tar at `src` into `dst`, passing each member's bytes through `edit`.
fn rewrite_tar(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut input = tar::Archive::new(fs::File::open(src).unwrap());
    let mut out = tar::Builder::new(fs::File::create(dst).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let data = edit(&name, data);
        let mut h = entry.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append(&h, data.as_slice()).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn corrupted_archives_fail_cleanly_and_store_nothing() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let layers = env.data_dir().join("burrow/storage/layers");
    let listing = || {
        let mut v: Vec<String> = fs::read_dir(&layers)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = (
        env.run(&["images", "-q", "--no-trunc"]).success().stdout.clone(),
        listing(),
    );

    let mut spec = sample_image().unwrap();
    // A last layer nothing else has, so that a failure after extracting it would show.
    spec.layers[2]
        .entries
        .push(burrow_tests::image_gen::Entry::file("opt/unique", "unique\n"));
    let good_oci = env.home().join("good.oci.tar");
    let d = spec.write_oci_archive(&good_oci).unwrap();
    let good_docker = env.home().join("good.docker.tar");
    spec.write_docker_archive(&good_docker, "bad:1").unwrap();
    let last_layer = d.layers[2].trim_start_matches("sha256:").to_string();

    // 1. A flipped byte in a layer blob: its digest does not match.
    let flipped = env.home().join("flipped.tar");
    rewrite_tar(&good_oci, &flipped, |name, mut data| {
        if name.ends_with(&last_layer) {
            let mid = data.len() / 2;
            data[mid] ^= 0x55;
        }
        data
    });
    // 2. A layer whose gzip stream is cut short.
    let truncated = env.home().join("truncated.tar");
    rewrite_tar(&good_docker, &truncated, |name, mut data| {
        if name.ends_with("layer.tar") && data.starts_with(&[0x1f, 0x8b]) && data.len() < 100_000 {
            data.truncate(data.len() / 2);
        }
        data
    });
    // 3. The whole archive cut short (a gzip file truncated mid-stream).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fs::read(&good_docker).unwrap()).unwrap();
    let mut gz = gz.finish().unwrap();
    gz.truncate(gz.len() * 2 / 3);
    let cut = env.home().join("cut.tar.gz");
    fs::write(&cut, gz).unwrap();
    // 4. Not an archive at all.
    let junk = env.home().join("junk");
    fs::write(&junk, "not an image\n").unwrap();

    for (file, expect) in [
        (&flipped, "digest mismatch"),
        (&truncated, "layer"),
        (&cut, "archive"),
        (&junk, "archive"),
    ] {
        let out = env.run(&["load", "-i", p(file)]);
        assert_eq!(out.code, 125, "{out}");
        assert!(
            out.stderr.starts_with("Error: ") && out.stderr.lines().count() == 1,
            "one line: {out}"
        );
        assert!(out.stderr.contains(expect), "{out}");
        let after = (
            env.run(&["images", "-q", "--no-trunc"]).success().stdout.clone(),
            listing(),
        );
        assert_eq!(after, before, "{} changed the store", file.display());
    }
    // The good one still loads afterwards.
    env.run(&["load", "-i", p(&good_oci)]).success();
    env.run(&["run", "--rm", "latest", "cat", "/opt/unique"])
        .success();
}
