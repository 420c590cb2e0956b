//! `burrow run` on burrow's userspace network (slirp4netns addressing): the container's
//! interface and files, reaching the host's loopback, published ports, `--network none`.
//! Traffic goes only to 127.0.0.1 on the host and to the container's own namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

/// A one-shot HTTP-ish server on the host's 127.0.0.1: answers every connection with `reply`.
fn host_server(reply: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
                    reply.len()
                )
                .as_bytes(),
            );
        }
    });
    port
}

#[test]
fn default_network_has_slirp_addresses_and_files() {
    let env = env_with_busybox();
    let out = env.run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "ip -4 addr show tap0; ip route; cat /etc/resolv.conf /etc/hosts; ip link show lo; \
         echo group_range=$(cat /proc/sys/net/ipv4/ping_group_range)",
    ]);
    out.success();
    assert!(out.stdout.contains("inet 10.0.2.100/24"), "{out}");
    assert!(out.stdout.contains("default via 10.0.2.2"), "{out}");
    assert!(out.stdout.contains("nameserver 10.0.2.3"), "{out}");
    assert!(out.stdout.contains("10.0.2.2\thost.containers.internal"), "{out}");
    assert!(out.stdout.contains("LOOPBACK,UP"), "lo is up\n{out}");
    // Podman's default sysctl: ICMP sockets for the container's root.
    assert!(out.stdout.contains("group_range=0 0"), "{out}");
}

#[test]
fn host_loopback_only_when_allowed() {
    let env = env_with_busybox();
    let port = host_server("hello-host");
    let url = format!("http://10.0.2.2:{port}/");
    let allowed = env.run(&[
        "run",
        "--rm",
        "--network",
        "slirp4netns:allow_host_loopback=true",
        "bb",
        "wget",
        "-q",
        "-O",
        "-",
        &url,
    ]);
    assert_eq!(allowed.success().stdout, "hello-host", "{allowed}");
    // As slirp4netns: without the option, 10.0.2.2 does not lead to the host's loopback.
    // (No `wget -T`: busybox 1.35's wget crashes with it, which would pass for a refusal.)
    let refused = env.run(&["run", "--rm", "bb", "wget", "-q", "-O", "-", &url]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("Connection refused"), "{refused}");
}

#[test]
fn published_port_reaches_the_container_and_is_freed() {
    let env = env_with_busybox();
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let publish = format!("127.0.0.1:{port}:80");
    env.run(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-p",
        &publish,
        "bb",
        "sh",
        "-c",
        // Answers with the container's view of its connections.
        "while true; do nc -l -p 80 -e netstat -tn; done",
    ])
    .success();
    let (reply, client) = read_banner_at(SocketAddr::from(([127, 0, 0, 1], port)));
    // The container sees the client as it is, 127.0.0.1 and its port (spliced in from the
    // container's loopback; through the tap it would be the gateway).
    assert!(
        reply.contains(&format!("127.0.0.1:{} ", client.port())),
        "{client}: {reply}"
    );
    // Taken while the container runs; free again at once when it is gone.
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_err(),
        "the stack holds the port"
    );
    env.run(&["rm", "-f", "srv"]).success();
    TcpListener::bind(("127.0.0.1", port)).expect("the port is free again after rm");
}

#[test]
fn network_flags_are_checked() {
    let env = env_with_busybox();
    let bad = env.run(&["run", "--rm", "-p", "notaport", "bb", "true"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(
        bad.stderr.contains("notaport"),
        "the error names the bad value\n{bad}"
    );
    let low = env.run(&["run", "--rm", "-p", "127.0.0.1:80:80", "bb", "true"]);
    assert_eq!(low.code, 125, "{low}");
    assert!(
        low.stderr.contains("net.ipv4.ip_unprivileged_port_start"),
        "{low}"
    );
    let none = env.run(&["run", "--rm", "--network", "none", "-p", "8080:80", "bb", "true"]);
    assert_eq!(none.code, 125, "{none}");
    let mode = env.run(&["run", "--rm", "--network", "bogus", "bb", "true"]);
    assert_eq!(mode.code, 125, "{mode}");
    assert!(mode.stderr.contains("bogus"), "{mode}");
}

#[test]
fn network_none_has_only_loopback() {
    let env = env_with_busybox();
    // lo works: a server and a client inside the container, over 127.0.0.1.
    let script = "ls /sys/class/net; mkdir -p /www && echo lo-ok > /www/index.html && \
                  httpd -p 127.0.0.1:8080 -h /www && wget -q -O - http://127.0.0.1:8080/index.html";
    let out = env.run(&["run", "--rm", "--network", "none", "bb", "sh", "-c", script]);
    out.success();
    assert_eq!(out.stdout_trimmed(), "lo\nlo-ok", "{out}");
}

/// Runs `burrow run --rm ARGS...` until its output contains `want` (the server in the other
/// container starts a moment after `run -d` returns), at most 20 s.
fn run_until_output(env: &TestEnv, args: &[&str], want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.run(args);
        if out.code == 0 && out.stdout.contains(want) {
            return out.stdout.clone();
        }
        assert!(Instant::now() < deadline, "never got {want:?}: {out}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn network_container_and_ns_join_another_namespace() {
    let env = env_with_busybox();
    env.run(&[
        "run",
        "-d",
        "--name",
        "web",
        "--hostname",
        "webhost",
        "bb",
        "sh",
        "-c",
        "echo hello-from-web > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
    ])
    .success();
    // The server listens on the other container's loopback: only its namespace reaches it.
    let fetch = ["wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"];
    let joined: Vec<&str> = ["run", "--rm", "--network", "container:web", "bb"]
        .into_iter()
        .chain(fetch)
        .collect();
    assert_eq!(
        run_until_output(&env, &joined, "hello-from-web"),
        "hello-from-web\n"
    );
    let own = env.run(&[&["run", "--rm", "bb"][..], &fetch[..]].concat());
    assert_ne!(
        own.code, 0,
        "a container of its own does not see web's loopback: {own}"
    );

    // As Podman: the joining container uses the other's /etc/hosts and resolv.conf.
    let hosts = env.run(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "bb",
        "cat",
        "/etc/hosts",
    ]);
    assert!(hosts.success().stdout.contains("webhost"), "{hosts}");

    // ns:PATH: the same namespace by its file.
    let pid = env.run(&["inspect", "-f", "{{.State.Pid}}", "web"]);
    let path = format!("ns:/proc/{}/ns/net", pid.success().stdout_trimmed());
    let by_path = env.run(&[&["run", "--rm", "--network", &path, "bb"][..], &fetch[..]].concat());
    assert_eq!(by_path.success().stdout, "hello-from-web\n", "{by_path}");

    // Errors, each naming what is wrong.
    let ports = env.run(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "-p",
        "8081:80",
        "bb",
        "true",
    ]);
    assert_eq!(ports.code, 125, "{ports}");
    assert!(ports.stderr.contains("port bindings"), "{ports}");
    let relative = env.run(&["run", "--rm", "--network", "ns:proc/1/ns/net", "bb", "true"]);
    assert!(relative.failure().stderr.contains("absolute"), "{relative}");
    let missing = env.run(&["run", "--rm", "--network", "container:nosuch", "bb", "true"]);
    assert!(missing.failure().stderr.contains("nosuch"), "{missing}");
    env.run(&[
        "create",
        "--name",
        "late",
        "--network",
        "container:web",
        "bb",
        "true",
    ])
    .success();
    env.run(&["stop", "-t", "0", "web"]).success();
    // The container whose network it joins is a dependency: started first, as Podman does.
    env.run(&["start", "late"]).success();
    let web = env.run(&["inspect", "--format", "{{.State.Status}}", "web"]);
    assert_eq!(web.success().stdout_trimmed(), "running", "{web}");
    env.run(&["rm", "-f", "late", "web"]).success();
}

/// Reads what a server sends on connecting to 127.0.0.1:`port` (see [`read_banner_at`]).
fn read_banner(port: u16) -> String {
    read_banner_at(SocketAddr::from(([127, 0, 0, 1], port))).0
}

/// Reads what `server` sends on connecting, retried until it answers (the server in the container
/// starts a moment after `run -d` returns, and an `nc` loop restarts between connections); also
/// the client's address of the connection that got the answer.
pub(crate) fn read_banner_at(server: SocketAddr) -> (String, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut text = String::new();
        if let Ok(mut s) = TcpStream::connect_timeout(&server, Duration::from_secs(5)) {
            let client = s.local_addr().unwrap();
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read_to_string(&mut text);
            if !text.is_empty() {
                return (text, client);
            }
        }
        assert!(Instant::now() < deadline, "no answer from {server}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A free port whose next one is free too, below the ephemeral range (a port the kernel picked,
/// as bind to port 0 does, can have its neighbour taken by any test's outgoing connection).
fn free_port_pair() -> u16 {
    let start = 20000 + (std::process::id() % 6000) as u16 * 2;
    (start..32000)
        .step_by(2)
        .find(|&p| {
            TcpListener::bind(("127.0.0.1", p)).is_ok() && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .expect("two free ports below 32000")
}

#[test]
fn publish_all_and_ranges_are_listed_by_port() {
    let env = env_with_busybox();
    env.run(&["create", "--name", "base", "bb", "true"]).success();
    env.run(&["commit", "-q", "-c", "EXPOSE 8080/tcp", "base", "exposed"])
        .success();
    let first = free_port_pair();
    let range = format!("127.0.0.1:{}-{}:7000-7001", first, first + 1);
    env.run(&[
        "run",
        "-d",
        "--name",
        "pp",
        "-P",
        "-p",
        &range,
        "exposed",
        "sh",
        "-c",
        "(while true; do echo p8080 | nc -l -p 8080; done) & \
         while true; do echo p7001 | nc -l -p 7001; done",
    ])
    .success();
    // -P: the EXPOSEd port gets one the kernel picks, and `port` says which.
    let picked = env.run(&["port", "pp", "8080"]);
    let (ip, port) = picked
        .success()
        .stdout_trimmed()
        .rsplit_once(':')
        .expect("IP:PORT");
    assert_eq!(ip, "0.0.0.0", "{picked}");
    let port: u16 = port.parse().unwrap();
    assert_ne!(port, 0, "{picked}");
    assert_eq!(read_banner(port), "p8080\n");
    // A range maps port to port.
    let ranged = env.run(&["port", "pp", "7001"]);
    assert_eq!(
        ranged.success().stdout_trimmed(),
        format!("127.0.0.1:{}", first + 1)
    );
    assert_eq!(read_banner(first + 1), "p7001\n");
    let all = env.run(&["port", "pp"]);
    assert_eq!(all.success().stdout.lines().count(), 3, "{all}");
    env.run(&["rm", "-f", "pp", "base"]).success();
}
