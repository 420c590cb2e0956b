//! One registry's HTTP endpoint: TLS set-up, the `/v2/` ping that finds the scheme and
//! the auth challenge, and requests authorised by a bearer token (from the challenge's
//! realm, per scope) or basic auth.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};

use crate::auth::Credentials;
use crate::{RegistryError, Result};

const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to reach registries, from the command's flags.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `--tls-verify`: `Some(false)` allows an unverified certificate and plain HTTP.
    pub tls_verify: Option<bool>,
    /// `--cert-dir`
    pub cert_dir: Option<PathBuf>,
    /// `--creds`, else looked up in the auth files.
    pub creds: Option<Credentials>,
    /// `--authfile`
    pub authfile: Option<PathBuf>,
}

/// How the registry asked us to authenticate.
#[derive(Debug, Clone)]
enum Challenge {
    None,
    Basic,
    Bearer { realm: String, service: Option<String> },
}

/// A request body.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Streamed (chunked); cannot be replayed, so authorise the scope first.
    Reader(&'a mut dyn Read),
}

pub struct Client {
    agent: ureq::Agent,
    /// `https://host:port` or `http://host:port`
    base: String,
    pub registry: String,
    creds: Option<Credentials>,
    challenge: Mutex<Challenge>,
    /// scope -> bearer token
    tokens: Mutex<HashMap<String, String>>,
}

fn ureq_detail(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

/// Root certificates: the system's bundle (else the built-in webpki roots) plus every
/// `*.crt` of the registry's cert dirs; a client certificate from `*.cert` + `*.key`.
fn tls_config(registry: &str, insecure: bool, cert_dir: Option<&Path>) -> Result<TlsConfig> {
    let mut extra: Vec<Certificate<'static>> = Vec::new();
    let mut client: Option<ClientCert> = None;
    for dir in crate::conf::cert_dirs(registry, cert_dir) {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in &files {
            let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| RegistryError::Config(format!("reading {}: {e}", p.display())))
            };
            match ext {
                "crt" => {
                    for item in ureq::tls::parse_pem(&read(f)?) {
                        if let Ok(PemItem::Certificate(c)) = item {
                            extra.push(c);
                        }
                    }
                }
                "cert" if client.is_none() => {
                    let key = f.with_extension("key");
                    let chain: Vec<Certificate<'static>> = ureq::tls::parse_pem(&read(f)?)
                        .filter_map(|i| match i {
                            Ok(PemItem::Certificate(c)) => Some(c),
                            _ => None,
                        })
                        .collect();
                    let key = ureq::tls::PrivateKey::from_pem(&read(&key)?)
                        .map_err(|e| RegistryError::Config(format!("{}: {e}", key.display())))?;
                    client = Some(ClientCert::new_with_certs(&chain, key));
                }
                _ => {}
            }
        }
    }
    let roots = match std::fs::read(SYSTEM_BUNDLE) {
        Ok(pem) => {
            let mut all: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            all.extend(extra);
            RootCerts::Specific(Arc::new(all))
        }
        Err(_) => RootCerts::new_with_certs(&extra),
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client)
        .disable_verification(insecure)
        .build())
}

/// Parses `Bearer realm="...",service="...",scope="..."` (or `Basic realm=...`).
fn parse_challenge(header: &str) -> Challenge {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    let mut map = HashMap::new();
    let mut rest = params;
    while let Some((k, v)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, after) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        map.insert(k, value.to_string());
        rest = after;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if let Some(realm) = map.remove("realm") {
            return Challenge::Bearer {
                realm,
                service: map.remove("service"),
            };
        }
    }
    if scheme.eq_ignore_ascii_case("basic") {
        return Challenge::Basic;
    }
    Challenge::None
}

/// Percent-encodes a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

impl Client {
    /// Connects to `registry` (`host:port`; Docker Hub's API host for `docker.io`): pings
    /// `/v2/` over HTTPS, then over plain HTTP when `insecure` allows it.
    pub fn connect(registry: &str, insecure: bool, opts: &ClientOptions, creds_key: &str) -> Result<Client> {
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => crate::auth::lookup(creds_key, opts.authfile.as_deref())?,
        };
        let host = if registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            registry
        };
        let tls = tls_config(registry, insecure, opts.cert_dir.as_deref())?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .user_agent(format!("burrow/{}", env!("CARGO_PKG_VERSION")))
            .max_idle_connections_per_host(8)
            .build()
            .into();
        let mut client = Client {
            agent,
            base: format!("https://{host}"),
            registry: registry.to_string(),
            creds,
            challenge: Mutex::new(Challenge::None),
            tokens: Mutex::new(HashMap::new()),
        };
        let ping = |base: &str| -> Result<Response<ureq::Body>, String> {
            let url = format!("{base}/v2/");
            client
                .agent
                .get(&url)
                .call()
                .map_err(|e| format!("Get {url:?}: {}", ureq_detail(&e)))
        };
        let resp = match ping(&client.base) {
            Ok(r) => r,
            Err(https_err) if insecure => {
                let plain = format!("http://{host}");
                match ping(&plain) {
                    Ok(r) => {
                        client.base = plain;
                        r
                    }
                    Err(_) => {
                        return Err(RegistryError::Unreachable {
                            registry: registry.into(),
                            detail: https_err,
                        })
                    }
                }
            }
            Err(e) => {
                let hint = if e.contains("Protocol")
                    || e.contains("corrupt message")
                    || e.contains("InvalidContentType")
                {
                    " (if the registry speaks plain HTTP, use --tls-verify=false or set insecure = true in registries.conf)"
                } else {
                    ""
                };
                return Err(RegistryError::Unreachable {
                    registry: registry.into(),
                    detail: format!("{e}{hint}"),
                });
            }
        };
        match resp.status().as_u16() {
            200..=299 => {}
            401 => {
                let c = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge)
                    .unwrap_or(Challenge::Basic);
                *client.challenge.lock().unwrap_or_else(|e| e.into_inner()) = c;
            }
            s => {
                return Err(RegistryError::Unreachable {
                    registry: registry.into(),
                    detail: format!("{}/v2/ answered HTTP {s}: not a container registry", client.base),
                })
            }
        }
        Ok(client)
    }

    /// Whether the endpoint is plain HTTP.
    pub fn is_plain_http(&self) -> bool {
        self.base.starts_with("http://")
    }

    /// Checks the credentials: for login.
    pub fn check_login(&self) -> Result<()> {
        let challenge = self.challenge.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match challenge {
            Challenge::None => Ok(()),
            Challenge::Bearer { .. } => self.token("").map(|_| ()),
            Challenge::Basic => {
                let Some(c) = &self.creds else {
                    return Err(RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                    });
                };
                let url = format!("{}/v2/", self.base);
                let resp = self
                    .agent
                    .get(&url)
                    .header("Authorization", c.basic_header())
                    .call()
                    .map_err(|e| self.http_err(&url, &e))?;
                match resp.status().as_u16() {
                    200..=299 => Ok(()),
                    401 | 403 => Err(RegistryError::BadCredentials(self.registry.clone())),
                    s => Err(RegistryError::Status {
                        what: url,
                        status: s,
                        body: String::new(),
                    }),
                }
            }
        }
    }

    fn http_err(&self, url: &str, e: &ureq::Error) -> RegistryError {
        RegistryError::Http {
            url: url.to_string(),
            detail: ureq_detail(e),
        }
    }

    /// A bearer token for `scope` from the challenge's realm (cached).
    fn token(&self, scope: &str) -> Result<String> {
        if let Some(t) = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(scope) {
            return Ok(t.clone());
        }
        let Challenge::Bearer { realm, service } =
            self.challenge.lock().unwrap_or_else(|e| e.into_inner()).clone()
        else {
            return Err(RegistryError::Unauthorized {
                registry: self.registry.clone(),
            });
        };
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = &service {
            url.push_str(&format!("{sep}service={}", query_escape(s)));
            sep = '&';
        }
        if !scope.is_empty() {
            url.push_str(&format!("{sep}scope={}", query_escape(scope)));
        }
        let mut req = self.agent.get(&url);
        if let Some(c) = &self.creds {
            req = req.header("Authorization", c.basic_header());
        }
        let resp = req.call().map_err(|e| self.http_err(&realm, &e))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(if self.creds.is_some() {
                RegistryError::BadCredentials(self.registry.clone())
            } else {
                RegistryError::Unauthorized {
                    registry: self.registry.clone(),
                }
            });
        }
        let body = read_small(resp, 1 << 20).map_err(|e| RegistryError::Io(format!("{realm}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(RegistryError::Status {
                what: format!("getting a token from {realm}"),
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RegistryError::Other(format!("{realm}: invalid token response: {e}")))?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| RegistryError::Other(format!("{realm}: the response has no token")))?
            .to_string();
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.to_string(), token.clone());
        Ok(token)
    }

    /// The Authorization header for `scope`, if the registry wants one.
    fn auth_header(&self, scope: &str) -> Result<Option<String>> {
        let challenge = self.challenge.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(match challenge {
            Challenge::None => None,
            Challenge::Basic => self.creds.as_ref().map(|c| c.basic_header()),
            Challenge::Bearer { .. } => Some(format!("Bearer {}", self.token(scope)?)),
        })
    }

    /// An absolute URL for a `/v2/...` path or a `Location` header.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends a request authorised for `scope` (`repository:NAME:pull` and alike). On a 401
    /// the challenge is read again and a replayable request is retried once.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        scope: &str,
        headers: &[(&str, &str)],
        mut body: Body<'_>,
    ) -> Result<Response<ureq::Body>> {
        let url = self.url(path);
        for attempt in 0..2 {
            let mut builder = http::Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            // Credentials go to the registry itself only, never to a host a Location names.
            let same_origin = url
                .strip_prefix(&self.base)
                .is_some_and(|rest| rest.starts_with('/'));
            if same_origin {
                if let Some(a) = self.auth_header(scope)? {
                    builder = builder.header("Authorization", a);
                }
            }
            let bad = |e: http::Error| RegistryError::Http {
                url: url.clone(),
                detail: e.to_string(),
            };
            let replayable = !matches!(body, Body::Reader(_));
            let result = match &mut body {
                Body::Empty => {
                    let empty: &[u8] = &[];
                    self.agent.run(builder.body(empty).map_err(bad)?)
                }
                Body::Bytes(b) => self.agent.run(builder.body(*b).map_err(bad)?),
                Body::Reader(r) => self
                    .agent
                    .run(builder.body(ureq::SendBody::from_reader(*r)).map_err(bad)?),
            };
            let resp = result.map_err(|e| self.http_err(&url, &e))?;
            if resp.status().as_u16() == 401 && attempt == 0 && replayable {
                if let Some(c) = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(parse_challenge)
                {
                    *self.challenge.lock().unwrap_or_else(|e| e.into_inner()) = c;
                }
                let had_token = self
                    .tokens
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(scope)
                    .is_some();
                let can_retry = had_token
                    || matches!(
                        *self.challenge.lock().unwrap_or_else(|e| e.into_inner()),
                        Challenge::Bearer { .. }
                    );
                if can_retry {
                    continue;
                }
            }
            if resp.status().as_u16() == 401 {
                return Err(if self.creds.is_some() {
                    RegistryError::BadCredentials(self.registry.clone())
                } else {
                    RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                    }
                });
            }
            return Ok(resp);
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Makes sure a token for `scope` is at hand (before a streamed request).
    pub fn authorize(&self, scope: &str) -> Result<()> {
        self.auth_header(scope).map(|_| ())
    }
}

/// Reads a response body of at most `limit` bytes.
pub fn read_small(resp: Response<ureq::Body>, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "response larger than {limit} bytes"
        )));
    }
    Ok(out)
}

/// The status error for a response, with the registry's error message.
pub fn status_error(what: &str, resp: Response<ureq::Body>) -> RegistryError {
    let status = resp.status().as_u16();
    let body = read_small(resp, 64 << 10).unwrap_or_default();
    let text = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let errs = v["errors"].as_array()?;
            Some(
                errs.iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("error"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    RegistryError::Status {
        what: what.to_string(),
        status,
        body: text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        match parse_challenge(
            r#"Bearer realm="https://auth.io/token",service="reg.io",scope="repository:a:pull""#,
        ) {
            Challenge::Bearer { realm, service } => {
                assert_eq!(realm, "https://auth.io/token");
                assert_eq!(service.as_deref(), Some("reg.io"));
            }
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        ));
        assert_eq!(
            query_escape("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
