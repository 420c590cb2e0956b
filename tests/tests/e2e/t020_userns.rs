//! The user namespace: id mappings, `--userns=keep-id`, `--uidmap`, and the single-id
//! fallback for a user without a subordinate range.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use burrow_tests::image_gen::{busybox_rootfs_entries, Layer};
use burrow_tests::{current_uid, current_user_name, TestEnv};

/// The first subordinate uid of the current user.
fn subuid_start() -> u32 {
    let text = std::fs::read_to_string("/etc/subuid").unwrap();
    let (name, uid) = (current_user_name(), current_uid().to_string());
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 3 && (f[0] == name || f[0] == uid))
        .and_then(|f| f[1].parse().ok())
        .expect("the test user has a subuid range")
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let ft = entry.file_type().ok()?;
        if ft.is_file() && entry.file_name() == name {
            return Some(path);
        }
        if ft.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn image_owners_map_to_the_subuid_range() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let inside = env.run(&[
        "run",
        "--rm",
        "bb",
        "stat",
        "-c",
        "%u:%g %a",
        "/home/user/owned-by-1000",
        "/srv/owned-2000-3000",
    ]);
    assert_eq!(
        inside.success().stdout_trimmed(),
        "1000:1000 640\n2000:3000 644",
        "{inside}"
    );
    // Seen from the host, container uid N is subuid_start + N - 1 (container root is the user).
    let layers = env.data_dir().join("burrow/storage/layers");
    let file = find_file(&layers, "owned-by-1000").expect("the layer holds the file");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.uid(), subuid_start() + 999, "{}", file.display());
    // Setuid bits survive extraction.
    let suid = env.run(&[
        "run",
        "--rm",
        "bb",
        "stat",
        "-c",
        "%a %u",
        "/usr/local/bin/suid-sh",
    ]);
    assert_eq!(suid.success().stdout_trimmed(), "4755 0", "{suid}");
}

#[test]
fn keep_id_runs_as_the_users_own_ids_with_true_owners() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let uid = current_uid();
    let out = env.run(&[
        "run",
        "--rm",
        "--userns=keep-id",
        "bb",
        "sh",
        "-c",
        "id -u; id -g; stat -c %u /bin/busybox /home/user/owned-by-1000",
    ]);
    out.success();
    let gid = unsafe { libc::getgid() };
    assert_eq!(
        out.stdout_trimmed(),
        format!("{uid}\n{gid}\n0\n1000"),
        "files keep their owners under keep-id\n{out}"
    );
}

#[test]
fn uidmap_gives_a_custom_mapping() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let out = env.run(&[
        "run",
        "--rm",
        "--uidmap",
        "0:1:5000",
        "--gidmap",
        "0:1:5000",
        "bb",
        "cat",
        "/proc/self/uid_map",
    ]);
    out.success();
    let fields: Vec<&str> = out.stdout_trimmed().split_whitespace().collect();
    assert_eq!(fields[0], "0", "{out}");
    assert_eq!(fields[2], "5000", "{out}");
    let bad = env.run(&["run", "--rm", "--uidmap", "0:1", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("invalid id mapping"), "{bad}");
    let too_big = env.run(&["run", "--rm", "--uidmap", "0:1:99999999", "bb", "true"]);
    assert_eq!(too_big.code, 125, "{too_big}");
}

/// The busybox rootfs with every file owned by root: what a single-id namespace can hold.
fn single_id_rootfs(env: &TestEnv) -> PathBuf {
    let entries = busybox_rootfs_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.owner(0, 0))
        .collect();
    let path = env.home().join("single-id.tar");
    let file = std::fs::File::create(&path).unwrap();
    Layer::new(entries).write_tar(file).unwrap();
    path
}

#[test]
fn norange_user_runs_a_single_id_image() {
    let env = TestEnv::new();
    let tar = single_id_rootfs(&env);
    let imported = env.run(&["import", tar.to_str().unwrap(), "single"]);
    imported.success();
    assert!(
        imported.stderr.contains("single id mapping"),
        "a clear warning about the fallback\n{imported}"
    );
    let out = env.run(&[
        "run",
        "--rm",
        "single",
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map",
    ]);
    out.success();
    let lines: Vec<&str> = out.stdout_trimmed().lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    let uid = burrow_tests::current_uid().to_string();
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", uid.as_str(), "1"],
        "one id in the namespace: the user's own\n{out}"
    );
}

#[test]
fn norange_user_gets_a_clear_error_for_multi_id_images() {
    let env = TestEnv::new();
    let tar = burrow_tests::image_gen::busybox_rootfs_once();
    let out = env.run(&["import", tar.to_str().unwrap(), "multi"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(
        out.stderr.contains("/etc/subuid"),
        "the error names /etc/subuid\n{out}"
    );
    assert_eq!(
        out.stderr.lines().filter(|l| l.starts_with("Error:")).count(),
        1,
        "{out}"
    );
    // Nothing half-imported is left.
    let layers = env.data_dir().join("burrow/storage/layers");
    let left: Vec<_> = std::fs::read_dir(&layers)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "leftover layer dirs: {left:?}");
}
