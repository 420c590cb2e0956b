//! The store under stress: many burrow processes at once, `kill -9` in the middle of a
//! load, and hostile layers. After each, the store must be consistent: every listed image
//! runs, no layer directory without an image, SQLite's integrity check passes, and
//! nothing was written outside the store.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use burrow_tests::image_gen::{busybox_rootfs_entries, Compression, Entry, ImageSpec, Layer};
use burrow_tests::TestEnv;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn store_dir(env: &TestEnv) -> PathBuf {
    env.data_dir().join("burrow/storage")
}

/// An image on the busybox rootfs: a shared middle layer, then `top` files of its own.
fn variant(tag: &str, top_files: usize, compression: Compression) -> ImageSpec {
    let mut top = vec![Entry::dir("v")];
    for i in 0..top_files {
        let body: Vec<u8> = (0..4096u32)
            .map(|b| (b.wrapping_mul(31) ^ i as u32) as u8)
            .collect();
        top.push(Entry::file(&format!("v/{tag}-{i:04}"), body));
    }
    ImageSpec {
        layers: vec![
            Layer::new(busybox_rootfs_entries().unwrap()),
            Layer::new(vec![Entry::dir("shared"), Entry::file("shared/f", "shared\n")]),
            Layer::new(top),
        ],
        compression,
        ..ImageSpec::default()
    }
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    let mut c = env.cmd(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    c.spawn().expect("spawning burrow")
}

/// The store's invariants, checked from outside: the database's integrity and foreign
/// keys, every layer directory has a row and every row an image, no staging or doomed
/// directory is left, and every image runs.
fn check_consistent(env: &TestEnv) {
    let store = store_dir(env);
    let db = rusqlite::Connection::open(store.join("burrow.db")).unwrap();
    let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let fk_problems: i64 = db
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk_problems, 0, "foreign key violations");
    let rows: BTreeSet<String> = db
        .prepare("SELECT id FROM layers")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let used: BTreeSet<String> = db
        .prepare("SELECT DISTINCT layer_id FROM image_layers")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, used, "layers without an image");
    let dirs: BTreeSet<String> = fs::read_dir(store.join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        dirs, rows,
        "layer directories and rows differ (orphans or leftovers)"
    );
    drop(db);
    let ids = env.run(&["images", "-q", "--no-trunc"]);
    for id in ids.success().stdout.lines() {
        let out = env.run(&["run", "--rm", id, "cat", "/etc/os-release"]);
        assert!(out.success().stdout.contains("burrow-test"), "{out}");
    }
}

#[test]
fn concurrent_loads_tags_rmis_and_runs_keep_the_store_consistent() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let archives: Vec<PathBuf> = (0..4)
        .map(|i| {
            let path = env.home().join(format!("v{i}.tar"));
            variant(&format!("v{i}"), 20, Compression::Gzip)
                .write_docker_archive(&path, &format!("localhost/v{i}:1"))
                .unwrap();
            path
        })
        .collect();
    for round in 0..2 {
        let mut children = Vec::new();
        for i in 0..20 {
            let v = i % 4;
            let name = format!("localhost/v{v}:1");
            let tag = format!("t{round}-{i}");
            let args: Vec<String> = match i % 5 {
                0 | 1 => vec!["load".into(), "-q".into(), "-i".into(), p(&archives[v]).into()],
                2 => vec!["rmi".into(), name],
                3 => vec!["tag".into(), "bb".into(), tag],
                _ => vec!["run".into(), "--rm".into(), "bb".into(), "true".into()],
            };
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            children.push((args.clone(), spawn(&env, &argv)));
        }
        for (args, child) in children {
            let out = child.wait_with_output().unwrap();
            let code = out.status.code().unwrap_or(-1);
            let stderr = String::from_utf8_lossy(&out.stderr);
            let ok = match args[0].as_str() {
                // rmi may find the image gone (1) or, never here, in use (2).
                "rmi" => matches!(code, 0 | 1),
                _ => code == 0,
            };
            assert!(ok, "round {round}: burrow {args:?} exited {code}: {stderr}");
        }
        check_consistent(&env);
    }
}

/// Waits until `cond` holds, at most a minute.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) of the process group of a child we spawned (its own group).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

#[test]
fn kill_9_mid_extraction_leaves_no_image_and_the_next_load_cleans_up() {
    let env = TestEnv::new();
    env.run(&["images"]).success(); // the user namespace exists before the kill
    let spec = variant("k", 300, Compression::Gzip);
    let layout = env.home().join("layout");
    let digests = spec.write_oci_layout(&layout).unwrap();
    // The top layer's blob becomes a FIFO the test feeds: half of it, then a stall.
    let blob_path = layout.join(format!("blobs/sha256/{}", &digests.layers[2][7..]));
    let blob = fs::read(&blob_path).unwrap();
    fs::remove_file(&blob_path).unwrap();
    let c = std::ffi::CString::new(p(&blob_path)).unwrap();
    // SAFETY: mkfifo with a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let mut child = spawn(&env, &["load", "-i", p(&layout)]);
    let mut fifo = None;
    wait_for("burrow to open the layer", || {
        fifo = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&blob_path)
            .ok();
        fifo.is_some()
    });
    let mut fifo = fifo.unwrap();
    // Back to blocking writes: the pipe holds 64 KiB; burrow reads as it extracts.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&fifo), libc::F_SETFL, 0) };
    fifo.write_all(&blob[..blob.len() / 2]).unwrap();
    let layers = store_dir(&env).join("layers");
    wait_for("the top layer's first files", || {
        entries_with_prefix(&layers, ".tmp-")
            .iter()
            .any(|d| d.join("diff/v/k-0010").exists())
    });
    kill9(&mut child);
    drop(fifo);
    assert!(
        !entries_with_prefix(&layers, ".tmp-").is_empty(),
        "the kill left no staging dir?"
    );
    let out = env.run(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(out.success().stdout, "", "{out}");
    // The next load cleans up and works; then the store is whole.
    fs::remove_file(&blob_path).unwrap();
    fs::write(&blob_path, &blob).unwrap();
    env.run(&["load", "-i", p(&layout)]).success();
    assert!(entries_with_prefix(&layers, ".tmp-").is_empty());
    check_consistent(&env);
}

#[test]
fn kill_9_before_the_records_are_written_leaves_orphans_that_are_removed() {
    let env = TestEnv::new();
    env.run(&["images"]).success();
    let archive = env.home().join("o.tar");
    let digests = variant("o", 10, Compression::Gzip)
        .write_oci_archive(&archive)
        .unwrap();
    let store = store_dir(&env);
    // Hold the database's write lock: burrow extracts and places the layers, then waits.
    let db = rusqlite::Connection::open(store.join("burrow.db")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut child = spawn(&env, &["load", "-i", p(&archive)]);
    let placed: Vec<PathBuf> = digests
        .diff_ids
        .iter()
        .map(|d| store.join("layers").join(&d[7..]))
        .collect();
    wait_for("the layers to be placed", || placed.iter().all(|d| d.exists()));
    kill9(&mut child);
    db.execute_batch("ROLLBACK").unwrap();
    drop(db);
    let out = env.run(&["images", "-q"]);
    assert_eq!(out.success().stdout, "", "{out}");
    // A command that touches layers removes the orphans.
    env.import_busybox("bb");
    for d in &placed[1..] {
        assert!(!d.exists(), "orphan {} left", d.display());
    }
    check_consistent(&env);
    env.run(&["load", "-i", p(&archive)]).success();
    check_consistent(&env);
}

#[test]
fn kill_9_at_several_moments_never_breaks_the_store() {
    let env = TestEnv::new();
    env.run(&["images"]).success();
    let archive = env.home().join("t.tar");
    variant("t", 400, Compression::Gzip)
        .write_docker_archive(&archive, "localhost/t:1")
        .unwrap();
    for delay in [0u64, 10, 30, 60, 100, 200, 400] {
        let mut child = spawn(&env, &["load", "-i", p(&archive)]);
        std::thread::sleep(Duration::from_millis(delay));
        kill9(&mut child);
        let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        let listed = out.success().stdout.trim().to_string();
        assert!(
            listed.is_empty() || listed == "localhost/t:1",
            "after {delay} ms: {out}"
        );
        if !listed.is_empty() {
            env.run(&["run", "--rm", "t:1", "ls", "/v/t-0399"]).success();
            env.run(&["rmi", "t:1"]).success();
        }
    }
    env.import_busybox("bb"); // touches layers: cleans what the kills left
    check_consistent(&env);
}

/// A raw tar header block: `name` as given (even `..`), `size` as given (even a lie).
fn raw_header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        old.linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// A tar of entries `(name, kind, data, link)` written raw, with end-of-archive blocks.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        out.extend(raw_header(name, *kind, data.len() as u64, *link));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// An OCI layout holding one image of one layer blob `blob` whose diff_id is `diff_id`.
fn layout_with_blob(dir: &Path, blob: &[u8], diff_id: &str, blob_digest: Option<&str>) {
    use sha2::Digest as _;
    let sha = |d: &[u8]| format!("sha256:{:x}", sha2::Sha256::digest(d));
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let write = |data: &[u8]| {
        let d = sha(data);
        fs::write(dir.join("blobs/sha256").join(&d[7..]), data).unwrap();
        d
    };
    let layer_digest = write(blob);
    let config = serde_json::json!({
        "architecture": burrow_tests::image_gen::oci::oci_arch(), "os": "linux",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let config_digest = write(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob_digest.unwrap_or(&layer_digest), "size": blob.len()}],
    })
    .to_string();
    let manifest_digest = write(manifest.as_bytes());
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "hostile"}}]});
    fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, Vec<u8>)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let data = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            out.insert((path, data));
        }
    }
    out
}

#[test]
fn hostile_layers_are_refused_with_one_line_errors_and_nothing_leaves_the_store() {
    use tar::EntryType::{GNULongName as LongName, Link as H, Regular as F, Symlink as S};
    let env = TestEnv::new();
    env.import_busybox("bb");
    let canary = env.root().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("file"), "canary\n").unwrap();
    let c = canary.to_str().unwrap().to_string();
    let cf = format!("{c}/file");
    let outside_home = snapshot(env.home());
    let truncated_gzip = {
        let g = gzip(&raw_tar(&[("f", F, &[5u8; 20000], None)]));
        g[..g.len() / 2].to_vec()
    };
    let mut huge_size = raw_header("huge", F, 1 << 40, None);
    huge_size.extend_from_slice(&[1u8; 4096]);
    let mut huge_name = raw_header("././@LongLink", LongName, 1 << 40, None);
    huge_name.extend_from_slice(&[b'a'; 4096]);
    // (name, layer tar or blob, whether `blob` is already compressed, expected error words)
    let cases: Vec<(&str, Vec<u8>, bool, &str)> = vec![
        (
            "dotdot",
            raw_tar(&[("../escape", F, b"x", None)]),
            false,
            "escapes the layer",
        ),
        (
            "absolute dotdot",
            raw_tar(&[("/../../escape", F, b"x", None)]),
            false,
            "escapes the layer",
        ),
        (
            "symlink then file through it",
            raw_tar(&[("l", S, b"", Some(&c)), ("l/new", F, b"x", None)]),
            false,
            "symlink",
        ),
        (
            "relative symlink then file",
            raw_tar(&[
                ("l", S, b"", Some("../../../../../../../../..")),
                ("l/tmp/escape", F, b"x", None),
            ]),
            false,
            "symlink",
        ),
        (
            "symlink dir then hardlink",
            raw_tar(&[("l", S, b"", Some(&c)), ("h", H, b"", Some("l/file"))]),
            false,
            "hard link",
        ),
        (
            "hardlink to absolute",
            raw_tar(&[("h", H, b"", Some(&cf))]),
            false,
            "hard link",
        ),
        (
            "hardlink dotdot",
            raw_tar(&[("h", H, b"", Some("../../../canary/file"))]),
            false,
            "hard link",
        ),
        (
            "whiteout of ..",
            raw_tar(&[(".wh..", F, b"", None)]),
            false,
            "invalid whiteout",
        ),
        (
            "whiteout in ..",
            raw_tar(&[("../.wh.file", F, b"", None)]),
            false,
            "escapes the layer",
        ),
        ("huge size", huge_size, false, "truncated"),
        ("huge long name", huge_name, false, "long name"),
        ("truncated gzip", truncated_gzip, true, "truncated gzip"),
    ];
    for (name, data, compressed, words) in &cases {
        let tar = env.home().join("layer.tar");
        fs::write(&tar, data).unwrap();
        let out = env.run(&["import", p(&tar), "hostile"]);
        assert_eq!(out.code, 125, "{name}: {out}");
        assert!(out.stderr.contains(words), "{name}: expected {words:?}\n{out}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{name}: not one line\n{out}"
        );
        // The same layer in an OCI layout for `load`.
        let layout = env.home().join("layout");
        let _ = fs::remove_dir_all(&layout);
        let blob = if *compressed { data.clone() } else { gzip(data) };
        layout_with_blob(
            &layout,
            &blob,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            None,
        );
        let out = env.run(&["load", "-i", p(&layout)]);
        assert_eq!(out.code, 125, "{name}: {out}");
        assert!(out.stderr.contains(words), "{name}: expected {words:?}\n{out}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{name}: not one line\n{out}"
        );
    }
    // A blob whose bytes are not the ones its manifest's digest names.
    let layout = env.home().join("layout");
    let _ = fs::remove_dir_all(&layout);
    let good = raw_tar(&[("f", F, b"x", None)]);
    let blob = gzip(&good);
    use sha2::Digest as _;
    let diff_id = format!("sha256:{:x}", sha2::Sha256::digest(&good));
    layout_with_blob(&layout, &blob, &diff_id, None);
    let blob_file = layout.join(format!("blobs/sha256/{:x}", sha2::Sha256::digest(&blob)));
    let mut corrupt = blob.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff; // the gzip trailer's size: the content stays readable
    fs::write(&blob_file, &corrupt).unwrap();
    let out = env.run(&["load", "-i", p(&layout)]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("digest mismatch"), "{out}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out}");

    let mut left: Vec<_> = fs::read_dir(&canary)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["file"], "something was written into the canary dir");
    assert_eq!(fs::read(canary.join("file")).unwrap(), b"canary\n");
    assert!(!env.root().join("escape").exists() && !env.home().join("escape").exists());
    let now_home: BTreeSet<_> = snapshot(env.home())
        .into_iter()
        .filter(|(path, _)| !path.starts_with(env.home().join("layout")) && !path.ends_with("layer.tar"))
        .collect();
    assert_eq!(now_home, outside_home, "files appeared in HOME");
    let out = env.run(&["images", "--format", "{{.Repository}}"]);
    assert_eq!(out.success().stdout, "localhost/bb\n", "{out}");
    check_consistent(&env);
}
