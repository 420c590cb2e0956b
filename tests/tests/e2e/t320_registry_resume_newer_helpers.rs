//! Registry client leftovers: a pull killed with -9 after a layer was verified does not
//! fetch that layer again; `--pull=newer` / `pull --policy=newer` ask the registry with a
//! HEAD request and download nothing when its digest is the local one; `credHelpers` in
//! auth.json run `docker-credential-NAME get`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use burrow_tests::image_gen::{busybox_rootfs_entries, Compression, Entry, ImageSpec, Layer};
use burrow_tests::registry::{skopeo, Fault, FaultProxy, TestRegistry};
use burrow_tests::{run_bounded, Outcome, TestEnv};
use serde_json::Value;

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

/// Writes `spec` as an OCI archive and has skopeo push it to `dest` (`ADDR/NAME:TAG`).
fn push(env: &TestEnv, spec: &ImageSpec, dest: &str) -> burrow_tests::image_gen::ImageDigests {
    let archive = env.home().join(format!("{}.tar", dest.replace(['/', ':'], "_")));
    let digests = spec.write_oci_archive(&archive).unwrap();
    skopeo(
        env,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{dest}"),
        ],
    )
    .success();
    digests
}

fn image(content: &str, extra: Option<Vec<u8>>) -> ImageSpec {
    let mut layers = vec![
        Layer::new(busybox_rootfs_entries().unwrap()),
        Layer::new(vec![Entry::file("version", content)]),
    ];
    if let Some(big) = extra {
        layers.push(Layer::new(vec![Entry::file("big", big)]));
    }
    ImageSpec {
        layers,
        compression: Compression::Gzip,
        ..ImageSpec::default()
    }
}

/// Incompressible bytes (xorshift), so the layer's blob is as large as its content.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn layer_entries(env: &TestEnv) -> Vec<String> {
    fs::read_dir(env.data_dir().join("burrow/storage/layers"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    let mut c = env.cmd(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    c.spawn().expect("spawning burrow")
}

#[test]
fn t320_a_layer_verified_before_a_kill_is_not_fetched_again() {
    let env = TestEnv::new();
    env.run(&["images"]).success(); // the user namespace exists before the kill
    let reg = TestRegistry::plain();
    let big = noise(8 << 20, 0x2545f4914f6cdd1d);
    let spec = image("1", Some(big.clone()));
    let name = format!("{}/resume:1", reg.addr());
    let digests = push(&env, &spec, &name);
    // The big (last) layer crawls; the others arrive at once and are verified meanwhile.
    let proxy = FaultProxy::start(reg.port, Fault::Throttle(digests.layers[2].clone()));
    let via = format!("{}/resume:1", proxy.addr());
    let mut child = spawn(&env, &["pull", "--tls-verify=false", &via]);
    let parked = |i: usize| {
        let prefix = format!(".part-{}-", hex(&digests.diff_ids[i]));
        layer_entries(&env).iter().any(|e| e.starts_with(&prefix))
    };
    wait_for("the two small layers verified", || parked(0) && parked(1));
    wait_for("part of the big layer", || {
        proxy.sent.load(Ordering::Relaxed) >= 256 << 10
    });
    // SAFETY: kill(2) of the process group of a child we spawned (its own group).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let out = env.run(&["images", "-q"]);
    assert_eq!(out.success().stdout, "", "{out}");
    for i in 0..3 {
        assert_eq!(proxy.count("GET", &digests.layers[i]), 1, "{:?}", proxy.requests);
    }

    proxy.slow.store(false, Ordering::Relaxed);
    let out = env.run(&["pull", "--tls-verify=false", &via]);
    assert!(out.success().stdout.contains(hex(&digests.config)), "{out}");
    // The verified layers came from the store, only the interrupted one again.
    assert_eq!(proxy.count("GET", &digests.layers[0]), 1, "{:?}", proxy.requests);
    assert_eq!(proxy.count("GET", &digests.layers[1]), 1, "{:?}", proxy.requests);
    assert_eq!(proxy.count("GET", &digests.layers[2]), 2, "{:?}", proxy.requests);
    assert!(
        layer_entries(&env).iter().all(|e| !e.starts_with('.')),
        "staging or parked dirs left: {:?}",
        layer_entries(&env)
    );
    let out = env.run(&["run", "--rm", &via, "cat", "/version"]);
    assert_eq!(out.success().stdout, "1", "{out}");
    let want = burrow_tests::image_gen::oci::sha256_digest(&big);
    let out = env.run(&["run", "--rm", &via, "sha256sum", "/big"]);
    let got = out
        .success()
        .stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert_eq!(format!("sha256:{got}"), want, "{out}");
}

#[test]
fn t321_pull_newer_downloads_only_a_changed_image() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    let v1 = push(&env, &image("1", None), &format!("{}/app:1", reg.addr()));
    // A proxy that changes nothing, to count the requests.
    let proxy = FaultProxy::start(reg.port, Fault::Throttle("sha256:none".into()));
    let name = format!("{}/app:1", proxy.addr());
    let out = env.run(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(out.success().stdout.trim(), hex(&v1.config), "{out}");
    let manifests = |m: &str| proxy.count(m, "/manifests/1");
    assert_eq!((manifests("HEAD"), manifests("GET")), (0, 1));

    // Unchanged in the registry: one HEAD, nothing downloaded.
    let out = env.run(&["pull", "-q", "--tls-verify=false", "--policy=newer", &name]);
    assert_eq!(out.success().stdout.trim(), hex(&v1.config), "{out}");
    assert_eq!(
        (manifests("HEAD"), manifests("GET")),
        (1, 1),
        "{:?}",
        proxy.requests
    );
    let out = env.run(&[
        "run",
        "--rm",
        "--pull=newer",
        "--tls-verify=false",
        &name,
        "cat",
        "/version",
    ]);
    assert_eq!(out.success().stdout, "1", "{out}");
    assert_eq!(
        (manifests("HEAD"), manifests("GET")),
        (2, 1),
        "{:?}",
        proxy.requests
    );
    // missing with the image present and never ask nothing.
    let before = proxy.requests.lock().unwrap().len();
    let out = env.run(&["pull", "-q", "--tls-verify=false", "--policy=missing", &name]);
    assert_eq!(out.success().stdout.trim(), hex(&v1.config), "{out}");
    let out = env.run(&["run", "--rm", "--pull=never", &name, "true"]);
    out.success();
    assert_eq!(
        proxy.requests.lock().unwrap().len(),
        before,
        "{:?}",
        proxy.requests
    );

    // The tag moves to a new image: newer pulls it.
    let v2 = push(&env, &image("2", None), &format!("{}/app:1", reg.addr()));
    let out = env.run(&[
        "run",
        "--rm",
        "--pull=newer",
        "--tls-verify=false",
        &name,
        "cat",
        "/version",
    ]);
    assert_eq!(out.success().stdout, "2", "{out}");
    assert_eq!(
        (manifests("HEAD"), manifests("GET")),
        (3, 2),
        "{:?}",
        proxy.requests
    );
    let out = env.run(&["pull", "-q", "--tls-verify=false", "--policy=newer", &name]);
    assert_eq!(out.success().stdout.trim(), hex(&v2.config), "{out}");
    assert_eq!(
        (manifests("HEAD"), manifests("GET")),
        (4, 2),
        "{:?}",
        proxy.requests
    );

    let out = env.run(&["pull", "--policy=sometimes", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("invalid pull policy \"sometimes\""), "{out}");
}

/// Runs burrow with `dir` first in PATH.
fn run_with_path(env: &TestEnv, dir: &Path, args: &[&str]) -> Outcome {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = env.cmd(args);
    cmd.env("PATH", path);
    run_bounded(cmd, None, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn t322_cred_helpers_in_auth_json() {
    const USER: &str = "helped";
    const PASSWORD: &str = "from-the-helper";
    let env = TestEnv::new();
    let reg = TestRegistry::with_token_auth(USER, PASSWORD);
    let addr = reg.addr();
    let name = format!("{addr}/bb:1");
    env.import_busybox("bb");
    env.run(&[
        "push",
        "-q",
        "--tls-verify=false",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        "bb",
        &name,
    ])
    .success();

    // A helper that answers as docker-credential-* do, and notes what it was asked.
    let bin = env.home().join("helpers");
    fs::create_dir_all(&bin).unwrap();
    let asked = env.home().join("asked");
    let helper = bin.join("docker-credential-testhelper");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\necho \"$server\" >>{asked}\n\
             case $server in\n  {addr}) echo '{{\"ServerURL\":\"{addr}\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' ;;\n  \
             *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
            asked = asked.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    let auth = env.runtime_dir().join("containers/auth.json");
    fs::create_dir_all(auth.parent().unwrap()).unwrap();
    // The helper wins over a wrong entry in auths for the same registry.
    let wrong = burrow_tests::registry::base64_std(format!("{USER}:wrong").as_bytes());
    fs::write(
        &auth,
        serde_json::to_vec(&serde_json::json!({
            "auths": { &addr: { "auth": wrong } },
            "credHelpers": { &addr: "testhelper" },
        }))
        .unwrap(),
    )
    .unwrap();
    let out = run_with_path(&env, &bin, &["pull", "-q", "--tls-verify=false", &name]);
    out.success();
    assert!(
        !out.stderr.contains(PASSWORD) && !out.stdout.contains(PASSWORD),
        "{out}"
    );
    assert_eq!(
        fs::read_to_string(&asked).unwrap().lines().next(),
        Some(addr.as_str())
    );
    let out = run_with_path(&env, &bin, &["login", "--get-login", &addr]);
    assert_eq!(out.success().stdout, format!("{USER}\n"), "{out}");

    // The helper has nothing for this registry: anonymous, which the registry refuses.
    let json: Value = serde_json::json!({ "credHelpers": { &addr: "testhelper" } });
    fs::write(&auth, serde_json::to_vec(&json).unwrap()).unwrap();
    fs::write(
        &helper,
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n",
    )
    .unwrap();
    env.run(&["rmi", "-a", "-f"]).success();
    let out = run_with_path(&env, &bin, &["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("authentication required"), "{out}");
    // A helper that is not installed: an error naming it.
    let json: Value = serde_json::json!({ "credHelpers": { &addr: "missing" } });
    fs::write(&auth, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = run_with_path(&env, &bin, &["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("docker-credential-missing"), "{out}");
}
