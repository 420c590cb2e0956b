//! A published port keeps a remote client's address, as the netstack issue words the test: root
//! makes two network namespaces joined by a veth pair (192.0.2.1 and 192.0.2.2, TEST-NET-1), runs
//! burrow as the test user inside the first with `-p 192.0.2.1:PORT:PORT`, connects from the
//! second, and the container sees 192.0.2.2. Tests named `asroot_` run in hack/test.sh's pass as
//! root (and only there); burrow itself runs as `$BURROW_TEST_USER`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burrow_tests::TestEnv;

use crate::t210_run_network::read_banner_at;

/// Set for the part that runs as the test user inside the first namespace.
const SERVE_ENV: &str = "BURROW_ASROOT_SERVE";
const PORT: u16 = 8080;

/// The two namespaces and the veth pair between them; removed on drop, with every process left in
/// the first.
struct Namespaces {
    host: String,
    client: String,
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id();
        let ns = Namespaces {
            host: format!("bca{id}"),
            client: format!("bcb{id}"),
        };
        let (va, vb) = (format!("bcva{id}"), format!("bcvb{id}"));
        ip(&["netns", "add", &ns.host]);
        ip(&["netns", "add", &ns.client]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &ns.host]);
        ip(&["link", "set", &vb, "netns", &ns.client]);
        for (name, dev, addr) in [(&ns.host, &va, "192.0.2.1/24"), (&ns.client, &vb, "192.0.2.2/24")] {
            ip(&["-n", name, "addr", "add", addr, "dev", dev]);
            ip(&["-n", name, "link", "set", dev, "up"]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ns
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.host])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        // Deleting a namespace deletes its end of the veth pair, and with it the other.
        for name in [&self.host, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the container answers a client in namespace `name` (a thread that joins it), and the
/// client's address.
fn connect_from(name: &str) -> (SocketAddr, String) {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("the client namespace");
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("joining the client namespace");
        let (reply, client) = read_banner_at(SocketAddr::from(([192, 0, 2, 1], PORT)));
        (client, reply)
    })
    .join()
    .expect("the client thread")
}

#[test]
fn asroot_published_port_keeps_a_remote_client_address() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "an asroot_ test: hack/test.sh runs it as root"
    );
    let user = std::env::var("BURROW_TEST_USER").expect("BURROW_TEST_USER (set by hack/test.sh)");
    let account = nix::unistd::User::from_name(&user)
        .unwrap()
        .expect("the test user exists");
    let ns = Namespaces::new();
    let tmp = tempfile::Builder::new()
        .prefix("bca")
        .tempdir_in("/tmp")
        .expect("a temp dir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    nix::unistd::chown(tmp.path(), Some(account.uid), Some(account.gid)).unwrap();

    // This binary again, as the test user in the first namespace: it runs the container (see
    // serve_published_port_for_asroot), says SERVING, and cleans up when its stdin closes.
    let me = std::env::current_exe().unwrap();
    let bin = std::env::var("BURROW_BIN").expect("BURROW_BIN");
    let path = std::env::var("PATH").unwrap_or_default();
    let mut inner = Command::new("ip")
        .args([
            "netns", "exec", &ns.host, "runuser", "-u", &user, "--", "env", "-i",
        ])
        .arg(format!("PATH={path}"))
        .arg(format!("BURROW_BIN={bin}"))
        .arg(format!("BURROW_TEST_TMPDIR={}", tmp.path().display()))
        .arg(format!("{SERVE_ENV}=1"))
        .arg(&me)
        .args([
            "--exact",
            "t230_asroot_client_address::serve_published_port_for_asroot",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the test user's part");
    let (tx, rx) = mpsc::channel();
    let stdout = inner.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("user: {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the test user's part says SERVING");
        // libtest's "test NAME ... " comes first on the line.
        if line.ends_with("SERVING") {
            break;
        }
    }

    let (client, reply) = connect_from(&ns.client);
    assert_eq!(client.ip().to_string(), "192.0.2.2");
    assert!(
        reply.contains(&format!("192.0.2.2:{} ", client.port())),
        "the container sees the client {client}:\n{reply}"
    );
    drop(inner.stdin.take());
    let status = inner.wait().unwrap();
    assert!(status.success(), "the test user's part: {status}");
}

/// Not a test of its own: the test user's part of the one above (nothing without `SERVE_ENV`).
#[test]
fn serve_published_port_for_asroot() {
    if std::env::var_os(SERVE_ENV).is_none() {
        return;
    }
    let env = TestEnv::new();
    env.import_busybox("bb");
    let publish = format!("192.0.2.1:{PORT}:{PORT}");
    // Answers each connection with the container's view of its connections.
    let serve = format!("while true; do nc -l -p {PORT} -e netstat -tn; done");
    env.run(&[
        "run", "-d", "--name", "ca", "-p", &publish, "bb", "sh", "-c", &serve,
    ])
    .success();
    // Ready once it answers (from 192.0.2.1 itself: through the stack, like any other client).
    read_banner_at(SocketAddr::from(([192, 0, 2, 1], PORT)));
    println!("SERVING");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    env.run(&["rm", "-f", "ca"]).success();
}
