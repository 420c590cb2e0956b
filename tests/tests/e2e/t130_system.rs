//! `system df`, `system prune`, `system reset`, `export`, zstd layers, `import --change`,
//! and storage.conf settings.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use burrow_tests::image_gen::{sample_image, Compression};
use burrow_tests::TestEnv;
use serde_json::Value;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn system_df_prune_and_reset() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env.run(&["tag", "bb", "third"]).success();
    let created = env.run(&["create", "--name", "c1", "bb", "true"]);
    let cid = created.success().stdout_trimmed().to_string();
    let out = env.run(&["system", "df"]);
    let text = out.success().stdout.clone();
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split("  ").filter(|f| !f.is_empty()).map(str::trim).collect())
        .collect();
    assert_eq!(
        lines[0],
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        "{out}"
    );
    assert_eq!(&lines[1][..3], ["Images", "1", "1"], "{out}");
    assert_eq!(lines[1][4], "0 B (0%)", "{out}");
    assert_eq!(&lines[2][..3], ["Containers", "1", "0"], "{out}");
    assert_eq!(&lines[3][..4], ["Local Volumes", "0", "0", "0 B"], "{out}");
    let json: Value =
        serde_json::from_str(&env.run(&["system", "df", "--format", "json"]).success().stdout).unwrap();
    assert_eq!(json[0]["Type"], "Images");
    assert!(json[0]["RawSize"].as_u64().unwrap() > 1_000_000, "{json}");
    env.run(&["system", "df", "-v"]).success();

    // Without -f it asks; "n" keeps everything.
    let out = env.run_with_stdin(&["system", "prune"], b"n\n");
    assert!(
        out.success()
            .stdout
            .starts_with("WARNING! This command removes:\n\t- all stopped containers\n"),
        "{out}"
    );
    assert!(out.stdout.contains("\t- all dangling images\n"), "{out}");
    // -f: the stopped container goes; the image has names, so it stays.
    let out = env.run(&["system", "prune", "-f", "--volumes"]);
    assert_eq!(
        out.success().stdout.lines().take(2).collect::<Vec<_>>(),
        ["Deleted Containers", cid.as_str()],
        "{out}"
    );
    assert!(out.stdout.contains("Total reclaimed space: "), "{out}");
    assert_eq!(env.run(&["images", "-q"]).success().stdout.lines().count(), 1);
    // -a: unused images too.
    let out = env.run(&["system", "prune", "-a", "-f"]);
    assert!(out.success().stdout.starts_with("Deleted Images\n"), "{out}");
    assert_eq!(env.run(&["images", "-q"]).success().stdout, "");
    assert!(!out.stdout.contains("Total reclaimed space: 0 B"), "{out}");

    // reset: asks, then removes the store (files of subordinate ids too) and the pause process.
    env.import_busybox("bb");
    env.run(&["run", "--name", "c2", "bb", "true"]).success();
    let out = env.run_with_stdin(&["system", "reset"], b"no\n");
    assert!(
        out.success().stdout.contains("WARNING! This will remove:"),
        "{out}"
    );
    assert_eq!(env.run(&["images", "-q"]).success().stdout.lines().count(), 1);
    let pause_file = env.runtime_dir().join("burrow/pause.pid");
    let pause: i32 = fs::read_to_string(&pause_file).unwrap().trim().parse().unwrap();
    env.run(&["system", "reset", "-f"]).success();
    assert!(
        !env.data_dir().join("burrow/storage").exists(),
        "the store is still there"
    );
    assert!(
        !Path::new(&format!("/proc/{pause}")).exists() || {
            let stat = fs::read_to_string(format!("/proc/{pause}/stat")).unwrap_or_default();
            stat.contains(") Z")
        },
        "the pause process still runs"
    );
    // Everything works again from scratch.
    env.import_busybox("bb");
    let out = env.run(&["run", "--rm", "bb", "cat", "/srv/owned-2000-3000"]);
    assert_eq!(out.success().stdout, "owned by 2000:3000\n");
}

fn tar_listing(data: &[u8]) -> Vec<(String, tar::EntryType, u32, u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for e in tar::Archive::new(data).entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut content = Vec::new();
        e.read_to_end(&mut content).unwrap();
        out.push((
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
            h.entry_type(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            content,
        ));
    }
    out
}

#[test]
fn export_writes_the_merged_filesystem() {
    let env = TestEnv::new();
    let archive = env.home().join("s.tar");
    let mut spec = sample_image().unwrap();
    spec.ref_name = Some("localhost/sample:1".into());
    spec.write_oci_archive(&archive).unwrap();
    env.run(&["load", "-i", p(&archive)]).success();
    env.run(&[
        "run",
        "--name",
        "c",
        "sample:1",
        "sh",
        "-c",
        "echo new > /new; rm /opt/keep; mkdir /d",
    ])
    .success();
    let out_file = env.home().join("c.tar");
    let out = env.run(&["export", "-o", p(&out_file), "c"]);
    assert_eq!(out.success().stdout, "", "{out}");
    let list = tar_listing(&fs::read(&out_file).unwrap());
    let get = |name: &str| list.iter().find(|e| e.0 == name);
    assert_eq!(get("new").map(|e| e.5.clone()), Some(b"new\n".to_vec()));
    assert!(get("d").is_some_and(|e| e.1 == tar::EntryType::Directory));
    assert!(get("opt/keep").is_none(), "removed in the container");
    assert!(get("etc/motd").is_none(), "whited out by the image");
    let data: Vec<&str> = list
        .iter()
        .filter(|e| e.0.starts_with("opt/data/"))
        .map(|e| e.0.as_str())
        .collect();
    assert_eq!(data, ["opt/data/c"], "opaque dir");
    let suid = get("opt/suid").unwrap();
    assert_eq!((suid.2, suid.3), (0o4755, 0));
    let owned = get("home/user/owned-by-1000").unwrap();
    assert_eq!((owned.3, owned.4, owned.2), (1000, 1000, 0o640));
    assert!(get("srv/fifo").is_some_and(|e| e.1 == tar::EntryType::Fifo));
    let links = [get("opt/hardlink").unwrap().1, get("opt/suid-target").unwrap().1];
    assert!(links.contains(&tar::EntryType::Link), "{links:?}");
    assert!(get("bin/busybox").is_some_and(|e| e.5.starts_with(b"\x7fELF")));
    // To stdout, the same archive.
    let mut cmd = env.cmd(&["export", "c"]);
    let stdout = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        stdout.status.success(),
        "{}",
        String::from_utf8_lossy(&stdout.stderr)
    );
    assert_eq!(stdout.stdout, fs::read(&out_file).unwrap());
    // An export imports back as an image that runs.
    env.run(&["import", p(&out_file), "again"]).success();
    let out = env.run(&["run", "--rm", "again", "cat", "/new"]);
    assert_eq!(out.success().stdout, "new\n");
    let out = env.run(&["export", "-o", p(&out_file), "nosuch"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("no such container"), "{out}");
}

#[test]
fn zstd_layers_load_and_import() {
    let env = TestEnv::new();
    let mut spec = sample_image().unwrap();
    spec.compression = Compression::Zstd;
    spec.ref_name = Some("localhost/zst:1".into());
    let archive = env.home().join("z.tar");
    let d = spec.write_oci_archive(&archive).unwrap();
    let out = env.run(&["load", "-i", p(&archive)]);
    assert_eq!(out.success().stdout, "Loaded image: localhost/zst:1\n", "{out}");
    let inspect: Value =
        serde_json::from_str(&env.run(&["image", "inspect", "zst:1"]).success().stdout).unwrap();
    assert_eq!(inspect[0]["RootFS"]["Layers"], serde_json::json!(d.diff_ids));
    let out = env.run(&["run", "--rm", "zst:1", "sh", "-c", "cat /opt/keep; ls /opt/data"]);
    assert_eq!(out.success().stdout, "keep\nc\n", "{out}");
    // A zstd-compressed root filesystem tarball for import.
    let rootfs = fs::read(burrow_tests::image_gen::busybox_rootfs_once()).unwrap();
    let zst = env.home().join("rootfs.tar.zst");
    fs::write(&zst, zstd::encode_all(rootfs.as_slice(), 3).unwrap()).unwrap();
    env.run(&["import", p(&zst), "zbb"]).success();
    let out = env.run(&["run", "--rm", "zbb", "cat", "/srv/file"]);
    assert_eq!(out.success().stdout, burrow_tests::image_gen::SRV_FILE);
}

#[test]
fn import_applies_changes() {
    let env = TestEnv::new();
    let tar = burrow_tests::image_gen::busybox_rootfs_once();
    let out = env.run(&[
        "import",
        "--change",
        "CMD=/bin/sh -c 'echo $GREETING from $PWD'",
        "--change",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR=/srv",
        "-c",
        "LABEL a=b",
        "-m",
        "imported",
        p(tar),
        "chg",
    ]);
    let id = out.success().stdout_trimmed().to_string();
    assert_eq!(id.len(), 64, "{out}");
    let out = env.run(&["run", "--rm", "chg"]);
    assert_eq!(out.success().stdout, "hello from /srv\n", "{out}");
    let i: Value = serde_json::from_str(&env.run(&["image", "inspect", "chg"]).success().stdout).unwrap();
    assert_eq!(i[0]["Config"]["Labels"]["a"], "b", "{i}");
    let out = env.run(&["import", "--change", "BOGUS x", p(tar), "bad"]);
    assert_eq!(out.code, 125, "{out}");
}

#[test]
fn storage_conf_chooses_the_store() {
    let env = TestEnv::new();
    let tar = burrow_tests::image_gen::busybox_rootfs_once();
    let containers_root = env.root().join("podman-conf-store");
    fs::create_dir_all(env.config_dir().join("containers")).unwrap();
    fs::write(
        env.config_dir().join("containers/storage.conf"),
        format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\n",
            containers_root.display()
        ),
    )
    .unwrap();
    env.run(&["import", p(tar), "a"]).success();
    assert!(
        containers_root.join("burrow.db").exists(),
        "containers' storage.conf is read"
    );
    // burrow's own file wins.
    let own_root = env.root().join("burrow-conf-store");
    fs::create_dir_all(env.config_dir().join("burrow")).unwrap();
    fs::write(
        env.config_dir().join("burrow/storage.conf"),
        "[storage]\ngraphroot = \"$HOME/../burrow-conf-store\"\n",
    )
    .unwrap();
    assert_eq!(env.run(&["images", "-q"]).success().stdout, "");
    env.run(&["import", p(tar), "b"]).success();
    assert!(own_root.join("burrow.db").exists(), "burrow's storage.conf wins");
    // --root wins over both.
    let flag_root = env.root().join("flag-store");
    assert_eq!(
        env.run(&["--root", p(&flag_root), "images", "-q"])
            .success()
            .stdout,
        ""
    );
    // A bad setting is a clear error.
    fs::write(
        env.config_dir().join("burrow/storage.conf"),
        "[storage]\ngraphroot = \"relative\"\n",
    )
    .unwrap();
    let out = env.run(&["images"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(
        out.stderr
            .contains("storage.conf: line 2: graphroot: must be an absolute path"),
        "{out}"
    );
    // Stores outside the default place are removed by the test's own clean-up too.
    fs::remove_file(env.config_dir().join("burrow/storage.conf")).unwrap();
    fs::remove_file(env.config_dir().join("containers/storage.conf")).unwrap();
    for root in [&containers_root, &own_root] {
        env.run(&["unshare", "rm", "-rf", p(root)]).success();
    }
}

#[test]
fn info_answers_podmans_and_dockers_questions() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env.run(&["create", "bb", "true"]).success();
    let out = env.run(&[
        "info",
        "--format",
        "{{.Host.Security.Rootless}} {{.Store.ContainerStore.Number}} {{.Store.ImageStore.Number}} {{.Version.Version}}",
    ]);
    assert_eq!(
        out.success().stdout_trimmed(),
        format!("true 1 1 {}", env!("CARGO_PKG_VERSION"))
    );
    let json: Value =
        serde_json::from_str(&env.run(&["system", "info", "--format", "json"]).success().stdout).unwrap();
    let uid_map = &json["Host"]["IDMappings"]["UIDMap"][0];
    assert_eq!(
        (uid_map["ContainerID"].as_u64(), uid_map["Size"].as_u64()),
        (Some(0), Some(1)),
        "{json}"
    );
    let yaml = env.run(&["info"]);
    assert!(yaml.success().stdout.contains("\n  security:\n"), "{yaml}");
    // As `docker info`, which scripts run to see whether the engine works.
    let docker = env.root().join("docker");
    std::os::unix::fs::symlink(burrow_tests::burrow_bin(), &docker).unwrap();
    let out = burrow_tests::run_bounded(
        env.command(
            &docker,
            &[
                "info",
                "--format",
                "{{.ServerVersion}} {{.Containers}} {{.Images}}",
            ],
        ),
        None,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(
        out.success().stdout_trimmed(),
        format!("{} 1 1", env!("CARGO_PKG_VERSION"))
    );
}
