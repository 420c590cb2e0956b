//! The userspace network stack (`burrow __netstack`) on its own, without the rest of burrow: a
//! namespace made with `unshare -Urn` plays the container, the stack creates its tap there
//! (`--netns-pid`, which runs `userns::network::create_tap`), and programs inside talk to servers
//! this test starts on the host's 127.0.0.1. Traffic only ever goes to 127.0.0.1 on the host or to
//! addresses inside namespaces the test made.
//!
//! Programs inside the namespace are this test binary again (`netns_helper`, driven by the
//! `BURROW_NETNS_HELPER` variable), so that they can report exactly what they saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use burrow_tests::burrow_bin;

const HELPER_ENV: &str = "BURROW_NETNS_HELPER";
const WAIT: Duration = Duration::from_secs(20);

/// A user and network namespace, held by `unshare -Urn sleep` (or made inside another one).
struct Netns {
    holder: Child,
}

fn netns_link(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Netns {
    fn new() -> Netns {
        Netns::from_command(Command::new("unshare").args(["-Urn", "sleep", "3600"]))
    }

    /// A network namespace inside `parent`'s user namespace (so `parent` is its "host").
    fn nested(parent: &Netns) -> Netns {
        Netns::from_command(&mut parent.command("unshare", &["-n", "sleep", "3600"]))
    }

    fn from_command(cmd: &mut Command) -> Netns {
        let holder = cmd
            .stdin(Stdio::null())
            .spawn()
            .expect("starting unshare (util-linux)");
        let ns = Netns { holder };
        let pid = ns.pid().to_string();
        let ours = netns_link("self");
        let deadline = Instant::now() + WAIT;
        // Ready once the holder runs sleep in a network namespace of its own.
        while !(std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
            && netns_link(&pid) != ours)
        {
            assert!(Instant::now() < deadline, "the namespace holder did not start");
            thread::sleep(Duration::from_millis(10));
        }
        ns
    }

    fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// `program args` inside the namespace, as its root (same uid outside).
    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.pid().to_string(),
            "-U",
            "-n",
            "--preserve-credentials",
            "--",
            program,
        ])
        .args(args);
        cmd
    }

    /// This test binary inside the namespace, running `netns_helper` with `task`.
    fn helper(&self, task: &str) -> Command {
        let exe = std::env::current_exe().expect("the test binary");
        let mut cmd = self.command(
            exe.to_str().expect("a UTF-8 path"),
            &[
                "--exact",
                "t200_network::netns_helper",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ],
        );
        cmd.env(HELPER_ENV, task);
        cmd
    }

    /// Runs a helper to completion; returns its `HELPER:` lines.
    fn run_helper(&self, task: &str) -> Vec<String> {
        let out = run_with_timeout(self.helper(task));
        helper_lines(&out)
    }

    /// Starts a server helper and waits for it to report `listening`.
    fn start_server(&self, task: &str) -> Server {
        self.start_task(task, "listening")
    }

    /// Starts a helper that keeps running, and waits for it to report `ready_line`.
    fn start_task(&self, task: &str, ready_line: &str) -> Server {
        let mut child = self
            .helper(task)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting a helper");
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        thread::spawn(move || forward_lines(stdout, tx));
        let line = rx.recv_timeout(WAIT).expect("the helper did not start");
        assert_eq!(line, ready_line);
        Server { child, lines: rx }
    }

    fn ip(&self, args: &[&str]) {
        let out = run_with_timeout(self.command("ip", args));
        assert!(out.0, "ip {args:?} failed: {}", out.1);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn forward_lines(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(rest) = line.strip_prefix("HELPER: ") {
            if tx.send(rest.to_string()).is_err() {
                return;
            }
        }
    }
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from the server helper")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (success, stdout + stderr).
fn run_with_timeout(mut cmd: Command) -> (bool, String) {
    let out = burrow_tests::run_bounded(
        {
            cmd.stdin(Stdio::null());
            cmd
        },
        None,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (out.code == 0, format!("{}{}", out.stdout, out.stderr))
}

fn helper_lines(out: &(bool, String)) -> Vec<String> {
    out.1
        .lines()
        .filter_map(|l| l.strip_prefix("HELPER: ").map(str::to_string))
        .collect()
}

/// A running `burrow __netstack`, tracing every frame (`BURROW_NETSTACK_DEBUG=1`) into a file
/// that failing assertions show.
struct Stack {
    child: Child,
    /// What it wrote to its ready fd.
    ready: String,
    log: tempfile::NamedTempFile,
}

/// Starts `burrow __netstack --netns-pid` (inside `host`, or in the real host namespace when
/// `host` is `None`) for the namespace `ns`, and waits for its ready message.
fn start_stack(host: Option<&Netns>, ns: &Netns, config: &str, extra: &[&str]) -> Stack {
    let bin = burrow_bin();
    let pid = ns.pid().to_string();
    let mut args = vec![
        "__netstack",
        "--netns-pid",
        pid.as_str(),
        "--ready-fd",
        "3",
        "--config",
        config,
    ];
    args.extend_from_slice(extra);
    let mut cmd = match host {
        Some(h) => h.command(bin.to_str().expect("UTF-8 path"), &args),
        None => {
            let mut c = Command::new(&bin);
            c.args(&args);
            c
        }
    };
    let (read, write) = pipe();
    let write_raw = write.as_raw_fd();
    // SAFETY: only dup2 runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(write_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let child = cmd
        .stdin(Stdio::null())
        .stderr(log.reopen().expect("the log file"))
        .env("BURROW_NETSTACK_DEBUG", "1")
        .spawn()
        .expect("starting burrow __netstack");
    drop(write);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(read).read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let ready = rx.recv_timeout(WAIT).expect("the stack's ready message");
    Stack { child, ready, log }
}

impl Stack {
    /// The end of the stack's trace, for failure messages.
    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        format!("--- last lines of the stack's trace:\n{}", tail.join("\n"))
    }

    fn assert_ready(&self) {
        assert!(
            self.ready.starts_with("1\n"),
            "the stack is not ready: {:?}",
            self.ready
        );
    }

    /// SIGTERM, then waits; returns the exit code.
    fn stop(mut self) -> i32 {
        // SAFETY: kill with a pid we spawned.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the stack") {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "the stack did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A port that is free on 127.0.0.1 right now (for TCP and UDP).
fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A TCP echo server on host 127.0.0.1; reports each client's address.
fn tcp_echo_server() -> (u16, mpsc::Receiver<SocketAddr>) {
    tcp_echo_server_on(TcpListener::bind("127.0.0.1:0").unwrap())
}

fn tcp_echo_server_on(listener: TcpListener) -> (u16, mpsc::Receiver<SocketAddr>) {
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = tx.send(stream.peer_addr().unwrap());
            thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, rx)
}

fn config(allow_host_loopback: bool, extra: &str) -> String {
    format!(
        r#"{{"slirp":{{"allow_host_loopback":{allow_host_loopback}}},"dns_servers":["127.0.0.1"]{extra}}}"#
    )
}

#[test]
fn netstack_tcp_reaches_host_loopback_via_gateway() {
    let (port, clients) = tcp_echo_server();
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(true, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-client 10.0.2.2:{port} hello-through-the-stack"));
    assert_eq!(
        lines,
        vec!["reply hello-through-the-stack"],
        "{lines:?}\n{}",
        stack.log()
    );
    let client = clients.recv_timeout(WAIT).unwrap();
    assert_eq!(
        client.ip(),
        Ipv4Addr::LOCALHOST,
        "the stack connects from the host's loopback"
    );
    // Pings to the gateway are answered by the stack itself.
    let ping = run_with_timeout(ns.command("busybox", &["ping", "-c", "1", "-W", "5", "10.0.2.2"]));
    assert!(ping.0, "{}", ping.1);
    assert_eq!(stack.stop(), 0);
}

#[test]
fn netstack_host_loopback_is_refused_by_default() {
    let (port, clients) = tcp_echo_server();
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(false, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-client 10.0.2.2:{port} x"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error") && lines[0].contains("refused"),
        "{lines:?}"
    );
    assert!(
        clients.try_recv().is_err(),
        "nothing may reach the host's loopback"
    );
}

#[test]
fn netstack_udp_to_host_loopback() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = tx.send(from);
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = server.send_to(&reply, from);
        }
    });
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(true, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("udp-client 10.0.2.2:{port} datagram"));
    assert_eq!(lines, vec![format!("reply echo:datagram from 10.0.2.2:{port}")]);
    assert_eq!(rx.recv_timeout(WAIT).unwrap().ip(), Ipv4Addr::LOCALHOST);
}

/// Datagrams larger than a 1500-byte MTU, both ways and over both families: the container's
/// kernel sends them in fragments, which the stack puts together; the replies go back in
/// fragments the stack makes.
#[test]
fn netstack_udp_datagrams_above_the_mtu_go_both_ways() {
    const SIZE: usize = 6000;
    let mut servers = vec![(UdpSocket::bind("127.0.0.1:0").unwrap(), "10.0.2.2")];
    if let Ok(s) = UdpSocket::bind("[::1]:0") {
        servers.push((s, "[fd00::2]"));
    }
    let ns = Netns::new();
    let cfg = r#"{"slirp":{"allow_host_loopback":true,"enable_ipv6":true,"mtu":1500},"dns_servers":[]}"#;
    let stack = start_stack(None, &ns, cfg, &[]);
    stack.assert_ready();
    for (server, gateway) in servers {
        let port = server.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            if let Ok((n, from)) = server.recv_from(&mut buf) {
                let _ = tx.send(n);
                let _ = server.send_to(&buf[..n], from);
            }
        });
        let lines = ns.run_helper(&format!("udp-big {gateway}:{port} {SIZE}"));
        assert_eq!(
            lines,
            vec![format!("reply {SIZE} bytes intact")],
            "{gateway}\n{}",
            stack.log()
        );
        assert_eq!(
            rx.recv_timeout(WAIT).unwrap(),
            SIZE,
            "{gateway}: the host got it whole"
        );
    }
}

/// A stub resolver on 127.0.0.1: `burrow.test` is 192.0.2.55 (A), no AAAA, anything else NXDOMAIN.
/// Its port also has a TCP echo server (for DNS over TCP).
fn stub_resolver() -> u16 {
    let (socket, tcp) = loop {
        let port = free_port();
        if let (Ok(u), Ok(t)) = (
            UdpSocket::bind(("127.0.0.1", port)),
            TcpListener::bind(("127.0.0.1", port)),
        ) {
            break (u, t);
        }
    };
    let port = socket.local_addr().unwrap().port();
    tcp_echo_server_on(tcp);
    thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if let Some(reply) = dns_reply(&buf[..n]) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    port
}

fn dns_reply(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    while *query.get(at)? != 0 {
        let len = usize::from(query[at]);
        labels.push(String::from_utf8_lossy(query.get(at + 1..at + 1 + len)?).to_lowercase());
        at += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(at + 1)?, *query.get(at + 2)?]);
    let question_end = at + 5;
    let name = labels.join(".");
    let mut reply = query[..question_end].to_vec();
    reply[2] = 0x81; // response, recursion desired
    reply[3] = 0x80; // recursion available, NOERROR
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if name != "burrow.test" {
        reply[3] |= 3; // NXDOMAIN
    } else if qtype == 1 {
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 55]);
    }
    Some(reply)
}

#[test]
fn netstack_dns_is_forwarded_to_the_host_resolver() {
    let port = stub_resolver();
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(false, &format!(r#","dns_port":{port}"#)), &[]);
    stack.assert_ready();
    let out = run_with_timeout(ns.command("busybox", &["nslookup", "burrow.test.", "10.0.2.3"]));
    assert!(out.0 && out.1.contains("192.0.2.55"), "{}", out.1);
    let out = run_with_timeout(ns.command("busybox", &["nslookup", "missing.test.", "10.0.2.3"]));
    assert!(!out.1.contains("192.0.2.55"), "{}", out.1);
    // DNS over TCP goes to the same resolver (here an echo server on its port).
    let lines = ns.run_helper("tcp-client 10.0.2.3:53 tcp-query");
    assert_eq!(lines, vec!["reply tcp-query"]);
    // Other ports of the DNS address are refused.
    let lines = ns.run_helper("tcp-client 10.0.2.3:80 x");
    assert!(lines.len() == 1 && lines[0].contains("refused"), "{lines:?}");
}

#[test]
fn netstack_ipv6_reaches_host_loopback_via_gateway() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("no ::1 on this host: skipped");
        return;
    };
    let (port, clients) = tcp_echo_server_on(listener);
    let ns = Netns::new();
    let cfg = r#"{"slirp":{"allow_host_loopback":true,"enable_ipv6":true},"dns_servers":[]}"#;
    let stack = start_stack(None, &ns, cfg, &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-client [fd00::2]:{port} over-ipv6"));
    assert_eq!(lines, vec!["reply over-ipv6"], "{lines:?}\n{}", stack.log());
    assert_eq!(
        clients.recv_timeout(WAIT).unwrap().ip(),
        std::net::Ipv6Addr::LOCALHOST
    );
    let ping = run_with_timeout(ns.command("busybox", &["ping6", "-c", "1", "-W", "5", "fd00::2"]));
    assert!(ping.0, "{}", ping.1);
}

/// Pings to other hosts go out through unprivileged ping sockets, only where the host's
/// `net.ipv4.ping_group_range` allows them. A namespace plays the host (192.0.2.1 on its
/// loopback), so the echo never leaves the namespaces the test made.
#[test]
fn netstack_relays_pings_where_the_host_allows() {
    let host = Netns::new();
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    let container = Netns::nested(&host);
    let ping =
        || run_with_timeout(container.command("busybox", &["ping", "-c", "1", "-W", "3", "192.0.2.1"]));
    // A new network namespace starts with ping sockets forbidden ("1 0").
    let stack = start_stack(Some(&host), &container, &config(false, ""), &[]);
    stack.assert_ready();
    let out = ping();
    assert!(!out.0, "no ping sockets, no echo: {}", out.1);
    assert_eq!(stack.stop(), 0);

    let allow =
        run_with_timeout(host.command("sh", &["-c", "echo 0 0 > /proc/sys/net/ipv4/ping_group_range"]));
    assert!(allow.0, "{}", allow.1);
    let stack = start_stack(Some(&host), &container, &config(false, ""), &[]);
    stack.assert_ready();
    let out = ping();
    assert!(out.0 && out.1.contains("1 packets received"), "{}", out.1);
    assert_eq!(stack.stop(), 0);
}

#[test]
fn netstack_published_port_reaches_the_container_with_the_client_port() {
    let host_port = free_port();
    let ns = Netns::new();
    let forwards = format!(
        r#","port_forwards":[{{"host_ip":"127.0.0.1","host_port":{host_port},"container_port":8080}},
           {{"host_ip":"127.0.0.1","host_port":{host_port},"container_port":8081,"proto":"udp"}}]"#
    );
    let stack = start_stack(None, &ns, &config(false, &forwards), &[]);
    stack.assert_ready();
    assert!(
        stack.ready.contains(&format!(r#""host_port":{host_port}"#)),
        "{}",
        stack.ready
    );

    // TCP: the server in the namespace sees the client's address and port (a loopback client is
    // spliced in from the namespace's own loopback: through the tap it would have to be the
    // gateway, as Linux drops 127/8 sources on a non-loopback interface).
    let server = ns.start_server("tcp-server 8080");
    let mut client = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(b"published").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = String::new();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(server.next_line(), format!("peer 127.0.0.1:{client_port}"));
    assert_eq!(reply, "published");

    // UDP, both ways (through the tap: a loopback client is the gateway).
    let udp_server = ns.start_server("udp-server 8081");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 100];
    let mut answer = None;
    for _ in 0..5 {
        client
            .send_to(b"udp-published", ("127.0.0.1", host_port))
            .unwrap();
        if let Ok((n, from)) = client.recv_from(&mut buf) {
            answer = Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
            break;
        }
    }
    let (text, from) = answer.expect("an answer through the published UDP port");
    assert_eq!(text, "udp-published");
    assert_eq!(from, SocketAddr::from(([127, 0, 0, 1], host_port)));
    let client_port = client.local_addr().unwrap().port();
    assert_eq!(udp_server.next_line(), format!("peer 10.0.2.2:{client_port}"));
    assert_eq!(stack.stop(), 0);
}

/// The issue's "client address kept" case, without root: a namespace plays the host, with
/// 192.0.2.1 and 192.0.2.2 (TEST-NET-1) on its loopback; the stack runs there, the container is a
/// namespace inside it, and a client bound to 192.0.2.2 connects to 192.0.2.1.
#[test]
fn netstack_published_port_keeps_the_client_address() {
    let host = Netns::new();
    host.ip(&["link", "set", "lo", "up"]);
    host.ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    host.ip(&["addr", "add", "192.0.2.2/32", "dev", "lo"]);
    let container = Netns::nested(&host);
    let forwards = r#","port_forwards":[{"host_ip":"192.0.2.1","host_port":8080,"container_port":8080}]"#;
    let stack = start_stack(Some(&host), &container, &config(false, forwards), &[]);
    stack.assert_ready();
    let server = container.start_server("tcp-server 8080");
    let lines = host.run_helper("tcp-client-from 192.0.2.2 192.0.2.1:8080 kept");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1], "reply kept");
    let client = lines[0].strip_prefix("local ").expect("the client's address");
    assert!(client.starts_with("192.0.2.2:"), "{client}");
    assert_eq!(server.next_line(), format!("peer {client}"));
}

#[test]
fn netstack_frees_its_ports_when_it_exits() {
    let port = free_port();
    let forwards = format!(
        r#","port_forwards":[{{"host_port":{port},"container_port":80}},{{"host_port":{port},"container_port":80,"proto":"udp"}}]"#
    );
    // Stopped by SIGTERM, with a connection open.
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(false, &forwards), &[]);
    stack.assert_ready();
    let _open = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(
        TcpListener::bind(("0.0.0.0", port)).is_err(),
        "the stack listens on {port}"
    );
    assert_eq!(stack.stop(), 0);
    TcpListener::bind(("0.0.0.0", port)).expect("TCP port free again");
    UdpSocket::bind(("0.0.0.0", port)).expect("UDP port free again");

    // Stopped by its exit fd hanging up.
    let (exit_r, exit_w) = pipe();
    let exit_raw = exit_r.as_raw_fd();
    let ns = Netns::new();
    let mut cmd = Command::new(burrow_bin());
    let pid = ns.pid().to_string();
    let cfg = config(false, &forwards);
    cmd.args([
        "__netstack",
        "--netns-pid",
        &pid,
        "--exit-fd",
        "4",
        "--config",
        &cfg,
    ]);
    // SAFETY: only dup2 runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(exit_raw, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(exit_r);
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the stack did not listen");
        thread::sleep(Duration::from_millis(20));
    }
    drop(exit_w);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    TcpListener::bind(("0.0.0.0", port)).expect("TCP port free again");

    // Stopped by the end of the namespace's process (the container is gone).
    let ns = Netns::new();
    let mut stack = start_stack(None, &ns, &config(false, &forwards), &[]);
    stack.assert_ready();
    drop(ns);
    assert_eq!(stack.wait(), 0);
    TcpListener::bind(("0.0.0.0", port)).expect("TCP port free again");
}

#[test]
fn netstack_reports_ports_it_cannot_bind() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let ns = Netns::new();
    let forwards =
        format!(r#","port_forwards":[{{"host_ip":"127.0.0.1","host_port":{port},"container_port":80}}]"#);
    let mut stack = start_stack(None, &ns, &config(false, &forwards), &[]);
    assert!(
        stack.ready.contains("address already in use"),
        "{:?}",
        stack.ready
    );
    assert_ne!(stack.wait(), 0);

    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start > 80 {
        let forwards = r#","port_forwards":[{"host_ip":"127.0.0.1","host_port":80,"container_port":80}]"#;
        let mut stack = start_stack(None, &ns, &config(false, forwards), &[]);
        assert!(
            stack.ready.contains("net.ipv4.ip_unprivileged_port_start"),
            "{:?}",
            stack.ready
        );
        assert_ne!(stack.wait(), 0);
    }
}

#[test]
fn netstack_carries_data_both_ways_intact() {
    const SIZE: u64 = 1 << 30;
    // Host → container: a host server sends SIZE bytes of a known pattern to the client inside.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        send_then_verify(&mut s, SIZE)
    });
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(true, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-pattern 10.0.2.2:{port} {SIZE}"));
    assert_eq!(lines, vec![format!("received {SIZE} intact")], "{lines:?}");
    assert_eq!(sent.join().unwrap(), SIZE);
}

/// The same through a published port, from a client on the host's loopback (spliced).
#[test]
fn netstack_published_port_carries_data_both_ways_intact() {
    const SIZE: u64 = 1 << 30;
    let (host_port, ns, _stack) = published_stack(7000);
    let server = ns.start_server(&format!("tcp-pattern-server 7000 {SIZE}"));
    let mut client = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    assert_eq!(send_then_verify(&mut client, SIZE), SIZE);
    assert_eq!(server.next_line(), format!("received {SIZE} intact"));
}

/// Host → container: sends `size` bytes of pattern 7, shuts down writing, then reads back and
/// checks pattern 9 to the end; returns how much came back.
fn send_then_verify(s: &mut TcpStream, size: u64) -> u64 {
    send_pattern(s, 7, size);
    read_pattern(s, 9).unwrap_or_else(|at| panic!("corrupted data from the container at byte {at}"))
}

/// The other end of [`send_then_verify`]: checks pattern 7 to the end, then sends `size` bytes
/// of pattern 9; returns the helper's report.
fn verify_then_send(s: &mut TcpStream, size: u64) -> String {
    match read_pattern(s, 7) {
        Ok(got) => {
            send_pattern(s, 9, size);
            format!("received {got} intact")
        }
        Err(at) => format!("corrupted at byte {at}"),
    }
}

/// Sends `size` bytes of pattern `seed`, then shuts down writing.
fn send_pattern(s: &mut TcpStream, seed: u64, size: u64) {
    let mut gen = Pattern::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        gen.fill(&mut buf[..n]);
        s.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    s.shutdown(Shutdown::Write).unwrap();
}

/// Reads to the end, checking pattern `seed`: how many bytes, or where they went wrong.
fn read_pattern(s: &mut TcpStream, seed: u64) -> Result<u64, u64> {
    let mut check = Pattern::new(seed);
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            return Ok(got);
        }
        if !check.verify(&buf[..n]) {
            return Err(got);
        }
        got += n as u64;
    }
}

/// A stack for a new namespace, its container port `container_port` published on a free port
/// of 127.0.0.1: (that port, the namespace, the stack).
fn published_stack(container_port: u16) -> (u16, Netns, Stack) {
    let host_port = free_port();
    let ns = Netns::new();
    let forwards = format!(
        r#","port_forwards":[{{"host_ip":"127.0.0.1","host_port":{host_port},"container_port":{container_port}}}]"#
    );
    let stack = start_stack(None, &ns, &config(false, &forwards), &[]);
    stack.assert_ready();
    (host_port, ns, stack)
}

#[test]
fn netstack_published_port_takes_500_concurrent_connections() {
    const N: usize = 500;
    let (host_port, ns, _stack) = published_stack(7000);
    let _server = ns.start_server("tcp-echo-server 7000");
    // All open at once, then each one used.
    let mut clients: Vec<TcpStream> = (0..N)
        .map(|i| {
            let s = TcpStream::connect(("127.0.0.1", host_port))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("connection {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut line = String::new();
        BufReader::new(c)
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        assert_eq!(line, format!("connection {i}\n"));
    }
}

/// Half-close from the container: the host server reads to the container's FIN, and only then
/// answers on the still-open other half. (From the host's side, see the published-port test:
/// its client shuts down writing and reads the reply the container sends afterwards.)
#[test]
fn netstack_carries_a_half_close_from_the_container() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        s.write_all(format!("after-eof:{got}").as_bytes()).unwrap();
    });
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(true, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-client 10.0.2.2:{port} half"));
    assert_eq!(lines, vec!["reply after-eof:half"], "{}", stack.log());
}

#[test]
fn netstack_carries_resets_both_ways() {
    // The host server resets: the client in the container sees the reset.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (first, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let _ = (&first).read(&mut buf);
        set_linger_zero(&first);
        drop(first);
        // The second client resets: the host server sees it.
        let (mut second, _) = listener.accept().unwrap();
        second.set_read_timeout(Some(WAIT)).unwrap();
        let mut data = Vec::new();
        let _ = tx.send(second.read_to_end(&mut data).map_err(|e| e.kind()));
    });
    let ns = Netns::new();
    let stack = start_stack(None, &ns, &config(true, ""), &[]);
    stack.assert_ready();
    let lines = ns.run_helper(&format!("tcp-client-wait 10.0.2.2:{port} x"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("reset"),
        "the container sees the host's RST: {lines:?}"
    );
    let lines = ns.run_helper(&format!("tcp-client-reset 10.0.2.2:{port}"));
    assert_eq!(lines, vec!["reset sent"]);
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        Err(std::io::ErrorKind::ConnectionReset),
        "the host sees the container's RST"
    );
}

/// Resets through a published port, from a client on the host's loopback (spliced): either
/// end's RST reaches the other.
#[test]
fn netstack_published_port_carries_resets_both_ways() {
    let (host_port, ns, stack) = published_stack(7000);

    let server = ns.start_server("tcp-server-reset 7000");
    let mut client = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"x").unwrap();
    assert_eq!(server.next_line(), "reset sent");
    let mut data = Vec::new();
    assert_eq!(
        client.read_to_end(&mut data).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the client sees the container's RST; {}",
        stack.log()
    );
    drop(server);

    let server = ns.start_server("tcp-server-wait 7000");
    let client = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    (&client).write_all(b"x").unwrap();
    set_linger_zero(&client);
    drop(client);
    assert_eq!(server.next_line(), "reset", "the container sees the client's RST");
}

#[test]
fn netstack_syn_flood_does_not_starve_another_containers_stack() {
    const CAP: usize = 200;
    // A host port whose backlog fills at once and that never accepts: past it, the flood's
    // host connects hang, so every flow the flood opens stays open.
    let black_hole = black_hole_listener();
    let hole_port = black_hole.local_addr().unwrap().port();
    let (echo_port, _) = tcp_echo_server();

    let flooder = Netns::new();
    let extra = format!(r#","max_tcp_flows":{CAP}"#);
    let flood_stack = start_stack(None, &flooder, &config(true, &extra), &[]);
    flood_stack.assert_ready();
    let _flood = flooder.start_task(&format!("tcp-flood 10.0.2.2:{hole_port} {}", 5 * CAP), "flooding");

    // Meanwhile another container's stack carries its connections as usual.
    let other = Netns::new();
    let other_stack = start_stack(None, &other, &config(true, ""), &[]);
    other_stack.assert_ready();
    for i in 0..20 {
        let lines = other.run_helper(&format!("tcp-client 10.0.2.2:{echo_port} ping{i}"));
        assert_eq!(lines, vec![format!("reply ping{i}")], "{}", other_stack.log());
    }

    // The flooded container's own connections are refused at once (the stack is at its cap:
    // its tap queue is in order, so the flood's SYNs came first), not left hanging.
    let lines = flooder.run_helper(&format!("tcp-client 10.0.2.2:{echo_port} late"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("refused"), "{lines:?}");
    // And the flood costs its stack a bounded number of host sockets, no more.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", flood_stack.child.id()))
        .unwrap()
        .count();
    assert!(fds <= CAP + 32, "the flooded stack holds {fds} fds (cap {CAP})");
}

/// A listener with the smallest backlog that never accepts.
fn black_hole_listener() -> TcpListener {
    // SAFETY: socket/bind/listen on a fresh socket with a valid sockaddr; checked.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let addr = sockaddr_in("127.0.0.1:0".parse().unwrap());
        assert_eq!(
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32
            ),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        TcpListener::from_raw_fd(fd)
    }
}

fn set_linger_zero(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a valid linger structure and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as u32,
        )
    };
    assert_eq!(r, 0);
}

/// A cheap deterministic byte stream (xorshift), so both ends can check the data.
struct Pattern(u64);

impl Pattern {
    fn new(seed: u64) -> Pattern {
        Pattern(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next_byte(&mut self) -> u8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u8
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_byte();
        }
    }

    fn verify(&mut self, buf: &[u8]) -> bool {
        buf.iter().all(|&b| b == self.next_byte())
    }
}

/// Not a test of its own: the program the other tests run inside their namespaces (it does
/// nothing unless `BURROW_NETNS_HELPER` is set). Reports on stdout, one `HELPER: ` line each.
#[test]
fn netns_helper() {
    let Ok(task) = std::env::var(HELPER_ENV) else {
        return;
    };
    let words: Vec<&str> = task.split_whitespace().collect();
    let say = |s: String| {
        println!("HELPER: {s}");
        std::io::stdout().flush().unwrap();
    };
    let timeout = Some(WAIT);
    match words.as_slice() {
        ["tcp-client", addr, msg] => match TcpStream::connect_timeout(&addr.parse().unwrap(), WAIT) {
            Ok(mut s) => {
                s.set_read_timeout(timeout).unwrap();
                s.write_all(msg.as_bytes()).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut reply = String::new();
                match s.read_to_string(&mut reply) {
                    Ok(_) => say(format!("reply {reply}")),
                    Err(e) => say(format!("error {e}")),
                }
            }
            Err(e) => say(format!("error {e}")),
        },
        ["tcp-client-from", source, addr, msg] => {
            // Bind the source first: std has no bind-then-connect, so use a raw socket.
            let s = bound_tcp_socket(source.parse().unwrap());
            let mut s = connect_socket(s, addr.parse().unwrap());
            say(format!("local {}", s.local_addr().unwrap()));
            s.set_read_timeout(timeout).unwrap();
            s.write_all(msg.as_bytes()).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            say(format!("reply {reply}"));
        }
        ["tcp-client-wait", addr, msg] => {
            // Sends without closing, then waits for whatever the server does.
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(timeout).unwrap();
            s.write_all(msg.as_bytes()).unwrap();
            let mut data = Vec::new();
            match s.read_to_end(&mut data) {
                Ok(_) => say(format!("closed after {} bytes", data.len())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => say("reset".into()),
                Err(e) => say(format!("error {e}")),
            }
        }
        ["tcp-client-reset", addr] => {
            let s = TcpStream::connect(addr).unwrap();
            set_linger_zero(&s);
            drop(s);
            say("reset sent".into());
        }
        ["tcp-flood", addr, count] => {
            // As many connects as asked, none completed by us; the sockets stay open until the
            // helper is killed.
            let addr: SocketAddr = addr.parse().unwrap();
            let count: usize = count.parse().unwrap();
            raise_fd_limit();
            let mut sockets = Vec::with_capacity(count);
            for _ in 0..count {
                // SAFETY: a fresh non-blocking socket, connected with a valid sockaddr.
                let fd = unsafe {
                    libc::socket(
                        libc::AF_INET,
                        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        0,
                    )
                };
                assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
                let sa = sockaddr_in(addr);
                // SAFETY: as above; EINPROGRESS is the expected answer.
                unsafe {
                    libc::connect(
                        fd,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as u32,
                    )
                };
                // SAFETY: fd was just created and is owned here.
                sockets.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            say("flooding".into());
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        }
        ["udp-big", addr, size] => {
            let size: usize = size.parse().unwrap();
            let addr: SocketAddr = addr.parse().unwrap();
            let bind = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let s = UdpSocket::bind(bind).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut gen = Pattern::new(3);
            let mut datagram = vec![0u8; size];
            gen.fill(&mut datagram);
            let mut buf = vec![0u8; 65536];
            for _ in 0..5 {
                s.send_to(&datagram, addr).unwrap();
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    let intact = if buf[..n] == datagram[..] {
                        "intact"
                    } else {
                        "corrupted"
                    };
                    say(format!("reply {n} bytes {intact}"));
                    return;
                }
            }
            say("error no reply".into());
        }
        ["tcp-echo-server", port] => {
            let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            for s in l.incoming() {
                let mut s = s.unwrap();
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        ["udp-client", addr, msg] => {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 2048];
            for _ in 0..5 {
                s.send_to(msg.as_bytes(), addr).unwrap();
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    say(format!(
                        "reply {} from {from}",
                        String::from_utf8_lossy(&buf[..n])
                    ));
                    return;
                }
            }
            say("error no reply".into());
        }
        ["tcp-server", port] => {
            let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            let (mut s, peer) = l.accept().unwrap();
            say(format!("peer {peer}"));
            let mut data = Vec::new();
            s.read_to_end(&mut data).unwrap();
            s.write_all(&data).unwrap();
        }
        ["udp-server", port] => {
            let s = UdpSocket::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            let mut buf = [0u8; 2048];
            let mut reported = false;
            loop {
                let (n, peer) = s.recv_from(&mut buf).unwrap();
                if !reported {
                    say(format!("peer {peer}"));
                    reported = true;
                }
                s.send_to(&buf[..n], peer).unwrap();
            }
        }
        ["tcp-pattern", addr, size] => {
            let mut s = TcpStream::connect(addr).unwrap();
            say(verify_then_send(&mut s, size.parse().unwrap()));
        }
        ["tcp-pattern-server", port, size] => {
            let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            let (mut s, _) = l.accept().unwrap();
            say(verify_then_send(&mut s, size.parse().unwrap()));
        }
        ["tcp-server-reset", port] => {
            // Reads one message, then resets.
            let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            let (s, _) = l.accept().unwrap();
            let mut buf = [0u8; 16];
            let _ = (&s).read(&mut buf);
            set_linger_zero(&s);
            drop(s);
            say("reset sent".into());
        }
        ["tcp-server-wait", port] => {
            // Reads to the end, and says how it ended.
            let l = TcpListener::bind(("0.0.0.0", port.parse::<u16>().unwrap())).unwrap();
            say("listening".into());
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(timeout).unwrap();
            let mut data = Vec::new();
            match s.read_to_end(&mut data) {
                Ok(_) => say(format!("closed after {} bytes", data.len())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => say("reset".into()),
                Err(e) => say(format!("error {e}")),
            }
        }
        _ => panic!("unknown helper task {task:?}"),
    }
}

fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit structure.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

fn bound_tcp_socket(source: Ipv4Addr) -> OwnedFd {
    // SAFETY: socket() with constant arguments, checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: fd was just created.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sin = sockaddr_in(SocketAddr::from((source, 0)));
    // SAFETY: sin is a valid sockaddr_in of the given length.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(r, 0, "bind {source}: {}", std::io::Error::last_os_error());
    fd
}

fn connect_socket(fd: OwnedFd, to: SocketAddr) -> TcpStream {
    let sin = sockaddr_in(to);
    // SAFETY: sin is a valid sockaddr_in of the given length.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    assert_eq!(r, 0, "connect {to}: {}", std::io::Error::last_os_error());
    TcpStream::from(fd)
}

fn sockaddr_in(addr: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}
