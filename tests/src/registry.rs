//! Real registries for pull/push tests: Debian's `docker-registry` (the CNCF distribution
//! registry) started on a free 127.0.0.1 port with its own config and storage, plain HTTP
//! or TLS (a CA made here with openssl) with htpasswd (bcrypt) auth; stopped on drop.
//! Also a fault-injecting HTTP proxy in front of one, and small helpers around skopeo.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Outcome, TestEnv};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A running registry; killed (and its storage removed) on drop.
pub struct TestRegistry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// With TLS: the CA certificate that signed the registry's.
    pub ca: Option<PathBuf>,
    /// With token auth: the token server's stop flag.
    token_stop: Option<Arc<AtomicBool>>,
}

enum Auth<'a> {
    None,
    Htpasswd(&'a str, &'a str),
    Token(&'a str, &'a str),
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestRegistry {
    /// A plain-HTTP registry without auth.
    pub fn plain() -> TestRegistry {
        Self::start(Auth::None)
    }

    /// A plain-HTTP registry with token auth (the flow of Docker Hub and quay.io): it answers
    /// 401 with `Bearer realm=...`; a token server here hands out JWTs (RS256, signed with
    /// openssl) granting what is asked to `user`/`password`, and nothing to anyone else.
    pub fn with_token_auth(user: &str, password: &str) -> TestRegistry {
        Self::start(Auth::Token(user, password))
    }

    /// A TLS registry (certificate for 127.0.0.1 signed by [`TestRegistry::ca`]) that
    /// wants `user`/`password` (basic auth, htpasswd with bcrypt).
    pub fn tls_with_auth(user: &str, password: &str) -> TestRegistry {
        Self::start(Auth::Htpasswd(user, password))
    }

    fn start(auth: Auth) -> TestRegistry {
        let base = std::env::var_os("BURROW_TEST_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("reg")
            .tempdir_in(base)
            .expect("a registry dir");
        let d = dir.path();
        fs::create_dir(d.join("data")).unwrap();
        let mut extra = String::new();
        let mut ca = None;
        let mut token_stop = None;
        if let Auth::Token(user, password) = auth {
            openssl(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=burrow token signer",
                    "-keyout",
                    "token.key",
                    "-out",
                    "token.crt",
                ],
                d,
            );
            openssl(
                &["x509", "-in", "token.crt", "-outform", "DER", "-out", "token.der"],
                d,
            );
            let (port, stop) = token_server(d.to_path_buf(), user.to_string(), password.to_string());
            extra = format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{port}/token\n    service: burrow-test\n    issuer: burrow-test-issuer\n    rootcertbundle: {}/token.crt\n",
                d.display()
            );
            token_stop = Some(stop);
        }
        if let Auth::Htpasswd(user, password) = auth {
            openssl(
                &[
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=burrow test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                ],
                d,
            );
            openssl(
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                ],
                d,
            );
            fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
            openssl(
                &[
                    "x509",
                    "-req",
                    "-in",
                    "server.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "san.ext",
                    "-out",
                    "server.crt",
                ],
                d,
            );
            let hash = bcrypt::hash(password, 5).expect("bcrypt");
            fs::write(d.join("htpasswd"), format!("{user}:{hash}\n")).unwrap();
            extra = format!(
                "  tls:\n    certificate: {0}/server.crt\n    key: {0}/server.key\nauth:\n  htpasswd:\n    realm: burrow-test\n    path: {0}/htpasswd\n",
                d.display()
            );
            ca = Some(d.join("ca.crt"));
        }
        // A port found free can be taken before the registry binds it: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}",
                d.display()
            );
            // `auth:` must be top level, `tls:` under http: the string above keeps that order.
            fs::write(d.join("config.yml"), config).unwrap();
            let log = fs::File::create(d.join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .args(["serve", &d.join("config.yml").to_string_lossy()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("starting docker-registry (Debian package docker-registry)");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut up = false;
            while Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    up = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return TestRegistry {
                    child,
                    port,
                    dir,
                    ca,
                    token_stop,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Installs the CA for this registry in `env`'s `~/.config/containers/certs.d/HOST:PORT/`.
    pub fn trust_in(&self, env: &TestEnv) {
        let ca = self.ca.as_ref().expect("a TLS registry");
        let dir = env.config_dir().join("containers/certs.d").join(self.addr());
        fs::create_dir_all(&dir).unwrap();
        fs::copy(ca, dir.join("ca.crt")).unwrap();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(stop) = &self.token_stop {
            stop.store(true, Ordering::Relaxed);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo ARGS...` in `env` (its HOME, XDG dirs: so it shares burrow's auth.json), with
/// a permissive signature policy.
pub fn skopeo(env: &TestEnv, args: &[&str]) -> Outcome {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    crate::run_bounded(env.command("skopeo", &all), None, Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What the proxy does to the response for one blob.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Flips one byte in the middle of the blob's body.
    Corrupt(String),
    /// Sends the blob's body in 16 KiB steps with a pause between them, while `slow` is set.
    Throttle(String),
}

/// A fault-injecting HTTP/1.1 proxy in front of a registry: each request is forwarded on a
/// connection of its own (`Connection: close`), the response read whole and changed as
/// the fault says. Stops when dropped.
pub struct FaultProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    /// Bytes of the faulted blob's body sent so far.
    pub sent: Arc<AtomicU64>,
    /// For [`Fault::Throttle`]: clear it to send at full speed.
    pub slow: Arc<AtomicBool>,
    /// Every request forwarded, as `METHOD PATH`, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: u16, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let slow = Arc::new(AtomicBool::new(true));
        let fault = Arc::new(Mutex::new(fault));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, n, sl, rq) = (stop.clone(), sent.clone(), slow.clone(), requests.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (f, n, sl, s, rq) = (
                            fault.lock().unwrap().clone(),
                            n.clone(),
                            sl.clone(),
                            s.clone(),
                            rq.clone(),
                        );
                        std::thread::spawn(move || {
                            let _ = serve(conn, upstream, &f, &n, &sl, &s, &rq);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            stop,
            sent,
            slow,
            requests,
        }
    }

    /// How many requests were `METHOD PATH` with PATH ending in `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&format!("{method} ")) && r.ends_with(suffix))
            .count()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    fault: &Fault,
    sent: &AtomicU64,
    slow: &AtomicBool,
    stop: &AtomicBool,
    requests: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        // One request head (the client's requests through here have no bodies).
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            if !line.to_ascii_lowercase().starts_with("connection:") {
                head.push(line);
            }
            if end {
                break;
            }
        }
        let path = head[0].split_whitespace().nth(1).unwrap_or("").to_string();
        let method = head[0].split_whitespace().next().unwrap_or("").to_string();
        requests.lock().unwrap().push(format!("{method} {path}"));
        let last = head.pop().unwrap();
        head.push("Connection: close\r\n".into());
        head.push(last);
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(head.concat().as_bytes())?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        let body_at = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(response.len(), |i| i + 4);
        let (target, throttle) = match fault {
            Fault::Corrupt(d) => (d, false),
            Fault::Throttle(d) => (d, true),
        };
        let is_target =
            path.contains("/blobs/") && path.ends_with(target.as_str()) && head[0].starts_with("GET");
        if is_target && !throttle && response.len() > body_at {
            let mid = body_at + (response.len() - body_at) / 2;
            response[mid] ^= 0xff;
        }
        // Keep-alive towards the client: rewrite nothing else; the client sees a complete response.
        out.write_all(&response[..body_at])?;
        let mut body = &response[body_at..];
        while !body.is_empty() {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let step = if is_target && throttle && slow.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                16 << 10
            } else {
                body.len()
            };
            let n = step.min(body.len());
            out.write_all(&body[..n])?;
            if is_target {
                sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            body = &body[n..];
        }
        out.flush()?;
        if response
            .windows(17)
            .any(|w| w.eq_ignore_ascii_case(b"connection: close"))
        {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn base64(data: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..=chunk.len() {
            out.push(table[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

/// Standard base64 (with padding), as auth.json and HTTP basic auth use it.
pub fn base64_std(data: &[u8]) -> String {
    base64(data, false)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves `GET /token?service=..&scope=..` on a free port until the flag is set.
fn token_server(dir: PathBuf, user: String, password: String) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let good = format!("Basic {}", base64_std(format!("{user}:{password}").as_bytes()));
    std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            let Ok((conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let _ = conn.set_nonblocking(false);
            let _ = answer_token(conn, &dir, &user, &good);
        }
    });
    (port, stop)
}

fn answer_token(conn: TcpStream, dir: &Path, user: &str, good: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let reply = |out: &mut TcpStream, status: &str, body: &str| {
        write!(
            out,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let authorized = match authorization.as_deref() {
        None => false,
        Some(a) if a == good => true,
        Some(_) => {
            return reply(
                &mut out,
                "401 Unauthorized",
                r#"{"details":"invalid credentials"}"#,
            )
        }
    };
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(("scope", v)) = pair.split_once('=') else {
            continue;
        };
        let scope = percent_decode(v);
        let parts: Vec<&str> = scope.splitn(3, ':').collect();
        if let [kind, name, actions] = parts.as_slice() {
            let actions: Vec<&str> = if authorized {
                actions.split(',').collect()
            } else {
                vec![]
            };
            access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({
        "alg": "RS256",
        "typ": "JWT",
        "x5c": [base64_std(&fs::read(dir.join("token.der"))?)],
    });
    let claims = serde_json::json!({
        "iss": "burrow-test-issuer",
        "sub": if authorized { user } else { "" },
        "aud": "burrow-test",
        "exp": now + 600,
        "nbf": now - 10,
        "iat": now - 10,
        "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), true),
        base64(claims.to_string().as_bytes(), true)
    );
    let mut sign = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    sign.stdin.take().unwrap().write_all(signing_input.as_bytes())?;
    let signed = sign.wait_with_output()?;
    let token = format!("{signing_input}.{}", base64(&signed.stdout, true));
    reply(
        &mut out,
        "200 OK",
        &serde_json::json!({"token": token, "expires_in": 600}).to_string(),
    )
}
