//! A TLS registry with htpasswd auth: certificates from certs.d, login/logout writing the
//! auth.json that skopeo reads too, wrong passwords, --creds; bearer tokens from a realm; and faults: a corrupted blob
//! is refused with nothing stored, a pull killed with -9 mid-layer leaves nothing behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use burrow_tests::image_gen::{busybox_rootfs_entries, sample_image, Compression, Entry, ImageSpec, Layer};
use burrow_tests::registry::{base64_std, skopeo, Fault, FaultProxy, TestRegistry};
use burrow_tests::TestEnv;
use serde_json::Value;

const USER: &str = "burrow";
const PASSWORD: &str = "s3cret-Pw";

#[test]
fn t310_login_logout_and_pulls_over_tls_with_auth() {
    let env = TestEnv::new();
    let reg = TestRegistry::tls_with_auth(USER, PASSWORD);
    let addr = reg.addr();

    // The registry's CA is not trusted yet: a certificate error.
    let out = env.run(&["login", "-u", USER, "-p", PASSWORD, &addr]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.to_lowercase().contains("certificate"), "{out}");
    reg.trust_in(&env);

    let auth_file = env.runtime_dir().join("containers/auth.json");
    let out = env.run(&["login", "-u", USER, "-p", "wrong-password", &addr]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("invalid username/password"), "{out}");
    assert!(
        !out.stderr.contains("wrong-password") && !out.stdout.contains("wrong-password"),
        "{out}"
    );
    assert!(!auth_file.exists());

    let out = env.run_with_stdin(
        &["login", "-u", USER, "--password-stdin", &addr],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert_eq!(out.success().stdout, "Login Succeeded!\n", "{out}");
    assert!(!out.stderr.contains(PASSWORD));
    let json: Value = serde_json::from_str(&fs::read_to_string(&auth_file).unwrap()).unwrap();
    // base64 of user:password, as Podman writes it.
    let expected = base64_std(format!("{USER}:{PASSWORD}").as_bytes());
    assert_eq!(json["auths"][&addr]["auth"], expected.as_str());
    assert_eq!(
        fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = env.run(&["login", "--get-login", &addr]);
    assert_eq!(out.success().stdout, format!("{USER}\n"));

    // skopeo finds the same credentials (XDG_RUNTIME_DIR/containers/auth.json) to push.
    let spec = sample_image().unwrap();
    let archive = env.home().join("s.tar");
    let digests = spec.write_oci_archive(&archive).unwrap();
    let certs = env.config_dir().join("containers/certs.d").join(&addr);
    let name = format!("{addr}/sample:1");
    skopeo(
        &env,
        &[
            "copy",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{name}"),
        ],
    )
    .success();
    let out = env.run(&["pull", "-q", &name]);
    assert_eq!(
        out.success().stdout.trim(),
        digests.config.trim_start_matches("sha256:"),
        "{out}"
    );
    let out = env.run(&["run", "--rm", &name, "cat", "/opt/keep"]);
    assert_eq!(out.success().stdout, "keep\n", "{out}");
    env.run(&["push", "-q", &name, &format!("{addr}/copy:1")])
        .success();

    // Logged out: the registry refuses; --creds still works; logging out twice fails.
    let out = env.run(&["logout", &addr]);
    assert_eq!(
        out.success().stdout,
        format!("Removed login credentials for {addr}\n")
    );
    let out = env.run(&["pull", "-q", &format!("{addr}/copy:1")]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("authentication required"), "{out}");
    let out = env.run(&[
        "pull",
        "-q",
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("{addr}/copy:1"),
    ]);
    out.success();
    let out = env.run(&[
        "pull",
        "-q",
        "--creds",
        &format!("{USER}:nope"),
        &format!("{addr}/copy:1"),
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(
        out.stderr.contains("invalid username/password") && !out.stderr.contains("nope"),
        "{out}"
    );
    let out = env.run(&["logout", &addr]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains(&format!("not logged into {addr}")), "{out}");
    let out = env.run(&["login", "--get-login", &addr]);
    assert_eq!(out.code, 125, "{out}");
}

#[test]
fn t313_bearer_tokens_from_the_realm() {
    let env = TestEnv::new();
    let reg = TestRegistry::with_token_auth(USER, PASSWORD);
    let addr = reg.addr();
    let name = format!("{addr}/bb:1");
    env.import_busybox("bb");
    // Anonymous: the token grants nothing, so the registry refuses.
    let out = env.run(&["push", "--tls-verify=false", "bb", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("authentication required"), "{out}");
    let out = env.run(&[
        "login",
        "--tls-verify=false",
        "-u",
        USER,
        "-p",
        "bad-password",
        &addr,
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("invalid username/password"), "{out}");
    let out = env.run(&["login", "--tls-verify=false", "-u", USER, "-p", PASSWORD, &addr]);
    assert_eq!(out.success().stdout, "Login Succeeded!\n", "{out}");
    // Logged in: tokens for push and pull come from the realm with the stored credentials.
    env.run(&["push", "-q", "--tls-verify=false", "bb", &name])
        .success();
    env.run(&["rmi", "bb"]).success();
    env.run(&["pull", "-q", "--tls-verify=false", &name]).success();
    let out = env.run(&["run", "--rm", &name, "echo", "token"]);
    assert_eq!(out.success().stdout, "token\n", "{out}");
    env.run(&["logout", &addr]).success();
    env.run(&["rmi", "-a"]).success();
    let out = env.run(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("authentication required"), "{out}");
}

fn layers_dir(env: &TestEnv) -> PathBuf {
    env.data_dir().join("burrow/storage/layers")
}

/// Layer directories and staging dirs in the store.
fn layer_entries(env: &TestEnv) -> Vec<String> {
    fs::read_dir(layers_dir(env))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn t311_a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    let spec = sample_image().unwrap();
    let archive = env.home().join("s.tar");
    let digests = spec.write_oci_archive(&archive).unwrap();
    let name = format!("{}/sample:1", reg.addr());
    skopeo(
        &env,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{name}"),
        ],
    )
    .success();
    let proxy = FaultProxy::start(reg.port, Fault::Corrupt(digests.layers[0].clone()));
    let out = env.run(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/sample:1", proxy.addr()),
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("digest mismatch"), "{out}");
    assert!(out.stderr.contains(&digests.layers[0]), "{out}");
    let out = env.run(&["images", "-q"]);
    assert_eq!(out.success().stdout, "", "{out}");
    assert_eq!(
        layer_entries(&env),
        Vec::<String>::new(),
        "layers or staging dirs left"
    );
    // Straight from the registry it is fine.
    env.run(&["pull", "-q", "--tls-verify=false", &name]).success();
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

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    let mut c = env.cmd(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    c.spawn().expect("spawning burrow")
}

#[test]
fn t312_a_pull_killed_mid_layer_leaves_nothing_and_the_next_one_works() {
    let env = TestEnv::new();
    env.run(&["images"]).success(); // the user namespace exists before the kill
    let reg = TestRegistry::plain();
    let big = noise(8 << 20, 0x9e3779b97f4a7c15);
    let spec = ImageSpec {
        layers: vec![
            Layer::new(busybox_rootfs_entries().unwrap()),
            Layer::new(vec![Entry::file("big", big.clone())]),
        ],
        compression: Compression::Gzip,
        ..ImageSpec::default()
    };
    let archive = env.home().join("big.tar");
    let digests = spec.write_oci_archive(&archive).unwrap();
    skopeo(
        &env,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}", archive.display()),
            &format!("docker://{}/big:1", reg.addr()),
        ],
    )
    .success();
    let proxy = FaultProxy::start(reg.port, Fault::Throttle(digests.layers[1].clone()));
    let name = format!("{}/big:1", proxy.addr());
    let mut child = spawn(&env, &["pull", "--tls-verify=false", &name]);
    wait_for("half a MiB of the big layer", || {
        proxy.sent.load(Ordering::Relaxed) >= 512 << 10
    });
    // SAFETY: kill(2) of the process group of a child we spawned (its own group).
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let out = env.run(&["images", "-q"]);
    assert_eq!(out.success().stdout, "", "{out}");

    proxy.slow.store(false, Ordering::Relaxed);
    let out = env.run(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(
        out.success().stdout.trim(),
        digests.config.trim_start_matches("sha256:"),
        "{out}"
    );
    assert!(
        layer_entries(&env).iter().all(|e| !e.starts_with('.')),
        "staging dirs left: {:?}",
        layer_entries(&env)
    );
    let want = burrow_tests::image_gen::oci::sha256_digest(&big);
    let out = env.run(&["run", "--rm", &name, "sha256sum", "/big"]);
    assert_eq!(
        format!(
            "sha256:{}",
            out.success().stdout.split_whitespace().next().unwrap_or_default()
        ),
        want,
        "{out}"
    );
}
