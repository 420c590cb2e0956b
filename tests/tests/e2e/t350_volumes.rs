//! Volumes and mounts: named volumes that outlive containers, bind mounts and their
//! options, `--mount`, `--tmpfs`, `--volumes-from`, image `VOLUME`s copied up, `:U`, `:O`,
//! `volume` commands, and mount destinations that cannot be redirected out of the root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use burrow_tests::image_gen::{busybox_rootfs_entries, Entry, ImageConfig, ImageSpec, Layer};
use burrow_tests::{current_uid, current_user_name, TestEnv};

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A directory of the user's on the host (under the env's HOME, so that its cleanup, done
/// inside the user namespace, also removes files a container gave to other ids).
fn host_dir(env: &TestEnv, name: &str) -> PathBuf {
    let dir = env.home().join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Loads an image made of the busybox rootfs plus `extra` entries, with `config`.
fn load_image(env: &TestEnv, name: &str, extra: Vec<Entry>, config: ImageConfig) {
    let mut config = config;
    if config.cmd.is_none() {
        config.cmd = Some(vec!["sh".into()]);
    }
    let spec = ImageSpec {
        layers: vec![Layer::new(busybox_rootfs_entries().unwrap()), Layer::new(extra)],
        config,
        ..ImageSpec::default()
    };
    let archive = env.home().join(format!("{name}.tar"));
    spec.write_docker_archive(&archive, &format!("localhost/{name}:latest"))
        .unwrap();
    env.run(&["load", "-i", p(&archive)]).success();
}

fn volume_names(env: &TestEnv) -> Vec<String> {
    let out = env.run(&["volume", "ls", "-q"]);
    let mut names: Vec<String> = out.success().stdout.lines().map(str::to_string).collect();
    names.sort();
    names
}

/// The first subordinate uid of the current user.
fn subuid_start() -> u32 {
    let text = fs::read_to_string("/etc/subuid").unwrap();
    let (name, uid) = (current_user_name(), current_uid().to_string());
    text.lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 3 && (f[0] == name || f[0] == uid))
        .and_then(|f| f[1].parse().ok())
        .expect("the test user has a subuid range")
}

fn named_volume_survives(env: &TestEnv) {
    env.run(&["volume", "create", "data"]).success();
    env.run(&[
        "run",
        "--name",
        "writer",
        "-v",
        "data:/data",
        "bb",
        "sh",
        "-c",
        "echo kept > /data/f",
    ])
    .success();
    env.run(&["rm", "writer"]).success();
    let out = env.run(&["run", "--rm", "-v", "data:/data", "bb", "cat", "/data/f"]);
    assert_eq!(out.success().stdout_trimmed(), "kept", "{out}");
    // The host sees the file under the store, in the volume's mount point.
    let inspect = env.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", "data"]);
    let mountpoint = PathBuf::from(inspect.success().stdout_trimmed());
    assert!(mountpoint.starts_with(env.data_dir()), "{inspect}");
    assert_eq!(fs::read_to_string(mountpoint.join("f")).unwrap(), "kept\n");
    // `-v NAME:DST` with a name not yet known makes the volume.
    env.run(&["run", "--rm", "-v", "auto:/a", "bb", "true"]).success();
    assert_eq!(volume_names(env), ["auto", "data"]);
}

#[test]
fn named_volume_outlives_its_container() {
    let env = env_with_busybox();
    named_volume_survives(&env);
    // A non-root container user can write a new volume: it is given to that user.
    let out = env.run(&[
        "run",
        "--rm",
        "-u",
        "1000:1000",
        "-v",
        "fresh:/d",
        "bb",
        "sh",
        "-c",
        "touch /d/f && stat -c %u:%g /d",
    ]);
    assert_eq!(out.success().stdout_trimmed(), "1000:1000", "{out}");
    // In a nested namespace that does not map burrow's root, the container's root still makes
    // its mount points and owns its new volume.
    for (name, userns) in [
        ("uidmap", ["--uidmap", "0:1:5000"]),
        ("keepid", ["--userns", "keep-id"]),
    ] {
        let out = env.run(&[
            "run",
            "--rm",
            userns[0],
            userns[1],
            "-v",
            &format!("{name}:/new/dir"),
            "bb",
            "sh",
            "-c",
            "touch /new/dir/f && stat -c %u /",
        ]);
        assert_eq!(out.success().stdout_trimmed(), "0", "{out}");
    }
}

#[test]
fn norange_named_volume_outlives_its_container() {
    // A user without a subuid range: one id in the namespace, so an image owned by root only.
    let env = TestEnv::new();
    let entries = busybox_rootfs_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.owner(0, 0))
        .collect();
    let tar = env.home().join("single-id.tar");
    Layer::new(entries)
        .write_tar(fs::File::create(&tar).unwrap())
        .unwrap();
    env.run(&["import", p(&tar), "bb"]).success();
    named_volume_survives(&env);
}

#[test]
fn bind_mounts_ro_rw_and_flags() {
    let env = env_with_busybox();
    let dir = host_dir(&env, "share");
    fs::write(dir.join("from-host"), "host\n").unwrap();
    let spec = format!("{}:/m:ro,nosuid,nodev,noexec", p(&dir));
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "bb",
        "sh",
        "-c",
        "cat /m/from-host; touch /m/x 2>&1; grep ' /m ' /proc/self/mountinfo",
    ]);
    out.success();
    assert!(out.stdout.starts_with("host\n"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let line = out.stdout.lines().last().unwrap();
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            line.split_whitespace()
                .nth(5)
                .unwrap()
                .split(',')
                .any(|f| f == flag),
            "{flag} missing: {out}"
        );
    }
    assert!(!dir.join("x").exists());
    // Read-write: the host sees what the container writes. `z` is accepted, said in debug.
    let rw = format!("{}:/m:z", p(&dir));
    let out = env.run(&["--log-level=debug", "run", "--rm", "-v", &rw, "bb", "true"]);
    assert!(out.success().stderr.contains("level=debug msg=\"-v "), "{out}");
    assert!(out.stderr.contains("no relabelling"), "{out}");
    env.run(&["run", "--rm", "-v", &rw, "bb", "sh", "-c", "echo c > /m/from-ctr"])
        .success();
    assert_eq!(fs::read_to_string(dir.join("from-ctr")).unwrap(), "c\n");
    // --mount with Docker's keys, inspect shows both kinds.
    let mount = format!("type=bind,source={},target=/b,readonly", p(&dir));
    env.run(&[
        "create", "--name", "c", "--mount", &mount, "-v", "vol:/v", "bb", "true",
    ])
    .success();
    let out = env.run(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}}\n{{end}}",
        "c",
    ]);
    let mut mounts: Vec<&str> = out.success().stdout.lines().filter(|l| !l.is_empty()).collect();
    mounts.sort();
    assert_eq!(mounts, ["bind /b false", "volume /v true"], "{out}");
    let out = env.run(&[
        "inspect",
        "--format",
        "{{range .HostConfig.Binds}}{{.}} {{end}}",
        "c",
    ]);
    // -v first, then --mount, whatever the order on the command line.
    let binds = format!("vol:/v:rw {}:/b:ro", p(&dir));
    assert_eq!(out.success().stdout_trimmed(), binds.trim(), "{out}");
}

#[test]
fn image_mounts_and_propagation() {
    let env = env_with_busybox();
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=image,source=bb,target=/img",
        "bb",
        "sh",
        "-c",
        "cat /img/srv/file; touch /img/x 2>&1; true",
    ]);
    out.success();
    assert!(
        out.stdout.starts_with("hello from the burrow test image\n"),
        "{out}"
    );
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=devpts,target=/mnt/pts,mode=0600",
        "bb",
        "grep",
        " /mnt/pts ",
        "/proc/self/mountinfo",
    ]);
    assert!(out.success().stdout.contains(" - devpts "), "{out}");
    assert!(out.stdout.contains("mode=600"), "{out}");
    let dir = host_dir(&env, "prop");
    // A slave has no master here: nothing outside propagates into the container's namespace.
    for (option, shared) in [("rshared", true), ("rprivate", false), ("rslave", false)] {
        let spec = format!("{}:/p:{option}", p(&dir));
        let out = env.run(&[
            "run",
            "--rm",
            "-v",
            &spec,
            "bb",
            "grep",
            " /p ",
            "/proc/self/mountinfo",
        ]);
        assert_eq!(
            out.success().stdout.contains(" shared:"),
            shared,
            "{option}: {out}"
        );
    }
}

#[test]
fn system_df_and_prune_count_volumes() {
    let env = env_with_busybox();
    env.run(&["volume", "create", "idle"]).success();
    env.run(&["create", "--name", "c", "-v", "kept:/d", "bb", "true"])
        .success();
    let out = env.run(&["system", "df", "--format", "{{.Type}} {{.Total}} {{.Active}}"]);
    assert!(out.success().stdout.contains("Local Volumes 2 1"), "{out}");
    let out = env.run(&["system", "prune", "-f", "--volumes"]);
    out.success();
    // The container does not run: prune removes it first, and then its volume is unused too.
    let deleted: Vec<&str> = out
        .stdout
        .split("Deleted Volumes\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .take_while(|l| !l.starts_with("Deleted") && !l.starts_with("Total"))
        .collect();
    let mut deleted = deleted;
    deleted.sort();
    assert_eq!(deleted, ["idle", "kept"], "{out}");
    assert!(volume_names(&env).is_empty());
}

#[test]
fn bad_mount_specs_fail_clearly_and_leave_nothing() {
    let env = env_with_busybox();
    let missing = env.home().join("missing");
    // A volume named before the bad mount is not made either.
    let both = format!("{}:/m", p(&missing));
    let out = env.run(&["run", "--rm", "-v", "early:/e", "-v", &both, "bb", "true"]);
    assert_eq!(out.code, 125, "{out}");
    let cases: Vec<(String, &str)> = vec![
        (format!("{}:/m", p(&missing)), "does not create"),
        ("/tmp:relative".into(), "must be an absolute path"),
        ("/tmp:/m:frobnicate".into(), "invalid option type \"frobnicate\""),
        ("/tmp:/m:ro,rw".into(), "more than once"),
    ];
    for (spec, message) in cases {
        let out = env.run(&["run", "--rm", "-v", &spec, "bb", "true"]);
        assert_eq!(out.code, 125, "{out}");
        assert!(out.stderr.contains(message), "{message}: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
    }
    assert!(!missing.exists(), "the missing source was created");
    let out = env.run(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/tmp,dst=/m,colour=red",
        "bb",
        "true",
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("unknown mount option"), "{out}");
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
    assert!(volume_names(&env).is_empty());
}

#[test]
fn a_volume_in_use_is_removed_only_with_force() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "user", "-v", "busy:/d", "bb", "true"])
        .success();
    let out = env.run(&["volume", "rm", "busy"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("being used"), "{out}");
    assert_eq!(volume_names(&env), ["busy"]);
    let out = env.run(&["volume", "rm", "nosuch"]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("no such volume"), "{out}");
    // -f takes the container that uses it first, as Podman's.
    env.run(&["volume", "rm", "-f", "busy"]).success();
    assert!(volume_names(&env).is_empty());
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
    assert_eq!(env.run(&["volume", "exists", "busy"]).code, 1);
    // A running container is stopped and removed first.
    env.run(&[
        "run", "-d", "--name", "runner", "-v", "live:/d", "bb", "sleep", "1000",
    ])
    .success();
    assert_eq!(env.run(&["volume", "rm", "live"]).code, 2);
    env.run(&["volume", "rm", "-f", "-t", "0", "live"]).success();
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
    // A volume made by `volume create` without a name is not anonymous: rm -v keeps it.
    let out = env.run(&["volume", "create"]);
    let name = out.success().stdout_trimmed().to_string();
    assert_eq!(name.len(), 64, "{out}");
    let spec = format!("{name}:/d");
    env.run(&["create", "--name", "c", "-v", &spec, "bb", "true"])
        .success();
    env.run(&["rm", "-v", "c"]).success();
    assert_eq!(volume_names(&env), [name]);
}

#[test]
fn volume_prune_removes_only_unused_volumes() {
    let env = env_with_busybox();
    for name in ["used", "idle1", "idle2"] {
        env.run(&["volume", "create", "--label", &format!("k={name}"), name])
            .success();
    }
    env.run(&["create", "--name", "c", "-v", "used:/d", "bb", "true"])
        .success();
    let out = env.run(&[
        "volume",
        "ls",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(out.success().stdout, "idle1\nidle2\n", "{out}");
    let out = env.run(&["volume", "ls", "--filter", "label=k=idle2", "-q"]);
    assert_eq!(out.success().stdout, "idle2\n", "{out}");
    let out = env.run(&["ps", "-a", "--filter", "volume=used", "--format", "{{.Names}}"]);
    assert_eq!(out.success().stdout, "c\n", "{out}");
    let out = env.run(&["ps", "-a", "--filter", "volume=idle1", "--format", "{{.Names}}"]);
    assert_eq!(out.success().stdout, "", "{out}");
    let out = env.run(&["volume", "prune", "-f"]);
    let mut removed: Vec<&str> = out.success().stdout.lines().collect();
    removed.sort();
    assert_eq!(removed, ["idle1", "idle2"], "{out}");
    assert_eq!(volume_names(&env), ["used"]);
    assert_eq!(env.run(&["volume", "exists", "used"]).code, 0);
}

#[test]
fn volumes_from_shares_a_containers_volumes() {
    let env = env_with_busybox();
    let dir = host_dir(&env, "bound");
    let bind = format!("{}:/h", p(&dir));
    env.run(&[
        "create",
        "--name",
        "data",
        "-v",
        "shared:/d",
        "-v",
        &bind,
        "bb",
        "true",
    ])
    .success();
    env.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "data",
        "bb",
        "sh",
        "-c",
        "echo one > /d/f && echo two > /h/g",
    ])
    .success();
    let out = env.run(&[
        "run",
        "--rm",
        "--volumes-from",
        "data:ro",
        "bb",
        "sh",
        "-c",
        "cat /d/f /h/g; touch /d/x 2>&1; true",
    ]);
    out.success();
    assert!(out.stdout.starts_with("one\ntwo\n"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    assert_eq!(fs::read_to_string(dir.join("g")).unwrap(), "two\n");
}

#[test]
fn image_volume_is_copied_up_and_rm_v_removes_it() {
    let env = TestEnv::new();
    load_image(
        &env,
        "withvol",
        vec![
            Entry::dir("data").owner(1000, 1000).mode(0o750),
            Entry::file("data/seed", "seeded\n").owner(1000, 1000),
        ],
        ImageConfig {
            volumes: vec!["/data".into()],
            ..ImageConfig::default()
        },
    );
    let out = env.run(&[
        "run",
        "--name",
        "c1",
        "withvol",
        "sh",
        "-c",
        "cat /data/seed; stat -c '%u:%g %a' /data /data/seed; grep ' /data ' /proc/self/mountinfo | wc -l",
    ]);
    assert_eq!(
        out.success().stdout,
        "seeded\n1000:1000 750\n1000:1000 644\n1\n",
        "{out}"
    );
    let anon = volume_names(&env);
    assert_eq!(anon.len(), 1, "one anonymous volume");
    assert_eq!(anon[0].len(), 64);
    // A named volume on an image path is copied up too, once.
    env.run(&[
        "run",
        "--rm",
        "-v",
        "named:/data",
        "withvol",
        "sh",
        "-c",
        "rm /data/seed",
    ])
    .success();
    let out = env.run(&["run", "--rm", "-v", "named:/data", "withvol", "ls", "/data"]);
    assert_eq!(out.success().stdout, "", "no second copy-up: {out}");
    // rm without -v keeps the anonymous volume; rm -v removes it; --rm always does.
    env.run(&["create", "--name", "c2", "withvol"]).success();
    assert_eq!(volume_names(&env).len(), 3);
    env.run(&["rm", "c1"]).success();
    assert_eq!(volume_names(&env).len(), 3);
    env.run(&["rm", "-v", "c2"]).success();
    assert_eq!(volume_names(&env).len(), 2);
    env.run(&["run", "--rm", "withvol", "true"]).success();
    assert_eq!(volume_names(&env).len(), 2);
}

#[test]
fn symlinked_destinations_stay_inside_the_root() {
    let env = TestEnv::new();
    // Host paths the image's links name: a mount resolved on the host would create or
    // cover them.
    let outside = host_dir(&env, "outside");
    let evil_abs = outside.join("abs");
    let evil_rel = outside.join("rel");
    let depth = "../".repeat(20);
    let rel_target = format!("{depth}{}", p(&evil_rel).trim_start_matches('/'));
    load_image(
        &env,
        "evil",
        vec![
            Entry::symlink("data", p(&evil_abs)),
            Entry::symlink("rel", &rel_target),
            Entry::symlink("etclink", "/etc"),
        ],
        ImageConfig {
            volumes: vec!["/etclink".into()],
            ..ImageConfig::default()
        },
    );
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "v1:/data",
        "-v",
        "v2:/rel/sub",
        "evil",
        "sh",
        "-c",
        &format!(
            "echo in > /data/f && echo in2 > /rel/sub/g && cat {}/f {}/sub/g && cat /etc/passwd | head -1",
            p(&evil_abs),
            p(&evil_rel)
        ),
    ]);
    assert_eq!(
        out.success().stdout,
        "in\nin2\nroot:x:0:0:root:/root:/bin/sh\n",
        "{out}"
    );
    // Nothing was made on the host's side of the links.
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "host dir touched");
    assert!(!evil_abs.exists() && !evil_rel.exists());
    // The anonymous volume for `/etclink -> /etc` was copied from the image's /etc.
    let anon: Vec<String> = volume_names(&env).into_iter().filter(|n| n.len() == 64).collect();
    assert_eq!(anon.len(), 0, "--rm removed it");
    let out = env.run(&["run", "--name", "k", "evil", "cat", "/etclink/os-release"]);
    assert!(out.success().stdout.contains("burrow-test"), "{out}");
    let name = volume_names(&env)
        .into_iter()
        .find(|n| n.len() == 64)
        .expect("an anonymous volume");
    let mountpoint = env.run(&["volume", "inspect", "--format", "{{.Mountpoint}}", &name]);
    let mountpoint = PathBuf::from(mountpoint.success().stdout_trimmed());
    assert!(
        mountpoint.join("passwd").is_file(),
        "copied from the image's /etc"
    );
}

#[test]
fn chown_u_gives_a_host_dir_to_the_container_user() {
    let env = env_with_busybox();
    let dir = host_dir(&env, "owned");
    fs::create_dir(dir.join("sub")).unwrap();
    // A link to a file outside the tree: the chown must not follow it.
    let outside = env.home().join("not-in-tree");
    fs::write(&outside, "mine\n").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("sub/link")).unwrap();
    let plain = format!("{}:/d", p(&dir));
    let out = env.run(&["run", "--rm", "-u", "1000", "-v", &plain, "bb", "touch", "/d/f"]);
    assert_ne!(
        out.code, 0,
        "uid 1000 cannot write the user's dir without :U\n{out}"
    );
    let chown = format!("{}:/d:U", p(&dir));
    let out = env.run(&[
        "run",
        "--rm",
        "-u",
        "1000",
        "-v",
        &chown,
        "bb",
        "sh",
        "-c",
        "touch /d/f /d/sub/g && stat -c %u /d",
    ]);
    assert_eq!(out.success().stdout_trimmed(), "1000", "{out}");
    let expected = subuid_start() + 999;
    for path in [
        dir.clone(),
        dir.join("f"),
        dir.join("sub/g"),
        dir.join("sub/link"),
    ] {
        assert_eq!(
            fs::symlink_metadata(&path).unwrap().uid(),
            expected,
            "{}",
            path.display()
        );
    }
    assert_eq!(
        fs::metadata(&outside).unwrap().uid(),
        current_uid(),
        "followed a symlink"
    );
}

#[test]
fn overlay_o_throws_changes_away() {
    let env = env_with_busybox();
    let dir = host_dir(&env, "lower");
    fs::write(dir.join("orig"), "orig\n").unwrap();
    let spec = format!("{}:/o:O", p(&dir));
    env.run(&[
        "create",
        "--name",
        "c",
        "-v",
        &spec,
        "bb",
        "sh",
        "-c",
        "ls /o; echo new > /o/new; echo x >> /o/orig",
    ])
    .success();
    for _ in 0..2 {
        env.run(&["start", "c"]).success();
        let waited = env.run(&["wait", "c"]);
        assert_eq!(waited.success().stdout_trimmed(), "0", "{waited}");
    }
    // Each run listed only the host's file: the last run's changes were gone.
    let logs = env.run(&["logs", "c"]);
    let lines: Vec<&str> = logs.success().stdout.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|l| *l == "orig"), "{logs}");
    assert_eq!(fs::read_to_string(dir.join("orig")).unwrap(), "orig\n");
    assert!(!dir.join("new").exists());
}

#[test]
fn tmpfs_mount_types_and_read_only_tmpfs() {
    let env = env_with_busybox();
    env.run(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        "--opt",
        "o=size=2m",
        "tv",
    ])
    .success();
    let out = env.run(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=1m,mode=1777",
        "--mount",
        "type=tmpfs,target=/u",
        "-v",
        "tv:/tv",
        "bb",
        "sh",
        "-c",
        "for d in /t /u /tv; do grep \" $d \" /proc/self/mountinfo | grep -c ' - tmpfs '; done; stat -c %a /t",
    ]);
    assert_eq!(out.success().stdout, "1\n1\n1\n1777\n", "{out}");
    // A volume that is a bind mount of a host directory of its own (`o=bind`).
    let dir = host_dir(&env, "bound");
    fs::write(dir.join("f"), "bound\n").unwrap();
    let device = format!("device={}", p(&dir));
    env.run(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        &device,
        "--opt",
        "o=bind",
        "bv",
    ])
    .success();
    let out = env.run(&["run", "--rm", "-v", "bv:/bv", "bb", "cat", "/bv/f"]);
    assert_eq!(out.success().stdout, "bound\n", "{out}");
    let out = env.run(&[
        "run",
        "--rm",
        "--read-only",
        "bb",
        "sh",
        "-c",
        "touch /tmp/a /var/tmp/b /run/c && echo ok; touch /x 2>&1; true",
    ]);
    out.success();
    assert!(out.stdout.starts_with("ok\n"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let out = env.run(&[
        "run",
        "--rm",
        "--read-only",
        "--read-only-tmpfs=false",
        "bb",
        "sh",
        "-c",
        "touch /tmp/a 2>&1",
    ]);
    assert!(out.stdout.contains("Read-only file system"), "{out}");
}

#[test]
fn volume_export_and_import_round_trip() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "--rm",
        "-v",
        "src:/d",
        "bb",
        "sh",
        "-c",
        "mkdir /d/sub && echo hi > /d/sub/f && ln -s sub/f /d/link && chown 1000:1000 /d/sub/f",
    ])
    .success();
    let tar = env.home().join("vol.tar");
    env.run(&["volume", "export", "src", "-o", p(&tar)]).success();
    env.run(&["volume", "create", "dst"]).success();
    env.run(&[
        "run",
        "--rm",
        "-v",
        "dst:/d",
        "bb",
        "sh",
        "-c",
        "echo own > /d/own",
    ])
    .success();
    env.run(&["volume", "import", "dst", p(&tar)]).success();
    let out = env.run(&[
        "run",
        "--rm",
        "-v",
        "dst:/d",
        "bb",
        "sh",
        "-c",
        "cat /d/link /d/own; stat -c %u /d/sub/f",
    ]);
    assert_eq!(out.success().stdout, "hi\nown\n1000\n", "{out}",);
    // An archive that writes through its own symlink is refused, nothing lands outside.
    let outside = host_dir(&env, "outside");
    let evil = env.home().join("evil.tar");
    Layer::new(vec![
        Entry::symlink("link", p(&outside)),
        Entry::file("link/planted", "evil\n"),
    ])
    .write_tar(fs::File::create(&evil).unwrap())
    .unwrap();
    let out = env.run(&["volume", "import", "dst", p(&evil)]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("symlink"), "{out}");
    assert!(!outside.join("planted").exists(), "written outside the volume");
    let out = env.run(&["volume", "inspect", "dst"]);
    assert!(
        out.success()
            .stdout
            .starts_with("[\n    {\n        \"Name\": \"dst\",\n        \"Driver\""),
        "Podman's field order: {out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "dst");
    assert_eq!(v[0]["Driver"], "local");
}

#[test]
fn device_binds_the_hosts_node() {
    let env = env_with_busybox();
    let out = env.run(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/xnull:rw",
        "bb",
        "sh",
        "-c",
        "test -c /dev/xnull && echo hi > /dev/xnull && echo written",
    ]);
    assert_eq!(out.success().stdout_trimmed(), "written", "{out}");
    for bad in ["/dev/nosuch", "/etc/passwd", "/dev/null:/x:rwx"] {
        let out = env.run(&["run", "--rm", "--device", bad, "bb", "true"]);
        assert_eq!(out.code, 125, "{out}");
        assert!(out.stderr.contains("invalid --device"), "{out}");
    }
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "", "nothing half-made");
}
