//! A small, blocking D-Bus client for the few calls burrow makes to the user's systemd
//! manager (StartTransientUnit, StopUnit, a property). Hand-written rather than zbus: it is
//! one synchronous round trip on a unix socket, so a monitor moving into its scope costs a
//! few milliseconds and no async runtime, where `systemd-run --scope` costs ~28 ms.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no systemd user manager: no D-Bus address (DBUS_SESSION_BUS_ADDRESS, $XDG_RUNTIME_DIR/systemd/private or $XDG_RUNTIME_DIR/bus)")]
    NoAddress,
    #[error("connecting to the user's systemd manager at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to the user's systemd manager: {0}")]
    Io(#[from] std::io::Error),
    #[error("the D-Bus peer refused authentication: {0}")]
    Auth(String),
    #[error("malformed D-Bus message: {0}")]
    Malformed(&'static str),
    /// An error reply: its name (`org.freedesktop.systemd1.UnitExists`) and message.
    #[error("{message} ({name})")]
    Call { name: String, message: String },
}

/// A D-Bus value; arrays carry their element signature (an empty array still has one).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Byte(u8),
    Bool(bool),
    I32(i32),
    U32(u32),
    U64(u64),
    Str(String),
    Path(String),
    Sig(String),
    Array(String, Vec<Value>),
    Struct(Vec<Value>),
    Variant(Box<Value>),
    /// A file descriptor: the index into the descriptors sent with the message.
    Fd(u32),
}

impl Value {
    pub fn signature(&self) -> String {
        match self {
            Value::Byte(_) => "y".into(),
            Value::Bool(_) => "b".into(),
            Value::I32(_) => "i".into(),
            Value::U32(_) => "u".into(),
            Value::U64(_) => "t".into(),
            Value::Str(_) => "s".into(),
            Value::Path(_) => "o".into(),
            Value::Sig(_) => "g".into(),
            Value::Array(elem, _) => format!("a{elem}"),
            Value::Struct(fields) => format!("({})", fields.iter().map(Value::signature).collect::<String>()),
            Value::Variant(_) => "v".into(),
            Value::Fd(_) => "h".into(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Path(s) | Value::Sig(s) => Some(s),
            Value::Variant(v) => v.as_str(),
            _ => None,
        }
    }

    /// A `(sv)` property of a unit, as StartTransientUnit takes them.
    pub fn property(name: &str, value: Value) -> Value {
        Value::Struct(vec![Value::Str(name.into()), Value::Variant(Box::new(value))])
    }

    /// `as`.
    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::Array(
            "s".into(),
            items.into_iter().map(|s| Value::Str(s.into())).collect(),
        )
    }
}

fn align_of(sig: u8) -> usize {
    match sig {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'b' | b'i' | b'u' | b's' | b'o' | b'a' | b'h' => 4,
        _ => 8, // t x d ( {
    }
}

fn pad(buf: &mut Vec<u8>, align: usize) {
    while !buf.len().is_multiple_of(align) {
        buf.push(0);
    }
}

/// Appends `v` to `buf`, whose offset 0 must be 8-aligned in the message.
fn marshal(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Byte(b) => buf.push(*b),
        Value::Bool(b) => {
            pad(buf, 4);
            buf.extend_from_slice(&u32::from(*b).to_le_bytes());
        }
        Value::I32(n) => {
            pad(buf, 4);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::U32(n) | Value::Fd(n) => {
            pad(buf, 4);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::U64(n) => {
            pad(buf, 8);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        Value::Str(s) | Value::Path(s) => {
            pad(buf, 4);
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Sig(s) => {
            buf.push(s.len() as u8);
            buf.extend_from_slice(s.as_bytes());
            buf.push(0);
        }
        Value::Array(elem, items) => {
            pad(buf, 4);
            let len_at = buf.len();
            buf.extend_from_slice(&[0; 4]);
            pad(buf, align_of(elem.as_bytes()[0]));
            let start = buf.len();
            for item in items {
                marshal(buf, item);
            }
            let len = (buf.len() - start) as u32;
            buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        }
        Value::Struct(fields) => {
            pad(buf, 8);
            for f in fields {
                marshal(buf, f);
            }
        }
        Value::Variant(inner) => {
            marshal(buf, &Value::Sig(inner.signature()));
            marshal(buf, inner);
        }
    }
}

/// Reads values from a message body (or header) by signature.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

/// The length of the first complete type in `sig`.
fn one_type(sig: &[u8]) -> Result<usize, BusError> {
    let bad = BusError::Malformed("bad signature");
    match sig.first() {
        None => Err(bad),
        Some(b'a') => Ok(1 + one_type(&sig[1..])?),
        Some(&open @ (b'(' | b'{')) => {
            let close = if open == b'(' { b')' } else { b'}' };
            let mut i = 1;
            while sig.get(i) != Some(&close) {
                if i >= sig.len() {
                    return Err(bad);
                }
                i += one_type(&sig[i..])?;
            }
            Ok(i + 1)
        }
        Some(_) => Ok(1),
    }
}

impl Reader<'_> {
    fn align(&mut self, a: usize) {
        self.pos = self.pos.div_ceil(a) * a;
    }

    fn take(&mut self, n: usize) -> Result<&[u8], BusError> {
        let end = self.pos.checked_add(n).ok_or(BusError::Malformed("length"))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or(BusError::Malformed("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, BusError> {
        self.align(4);
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn string(&mut self, len: usize) -> Result<String, BusError> {
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.take(1)?; // the nul
        Ok(s)
    }

    /// Reads one value of the single complete type `sig`.
    fn read(&mut self, sig: &[u8]) -> Result<Value, BusError> {
        Ok(match sig[0] {
            b'y' => Value::Byte(self.take(1)?[0]),
            b'b' => Value::Bool(self.u32()? != 0),
            b'i' => Value::I32(self.u32()? as i32),
            b'u' => Value::U32(self.u32()?),
            b'h' => Value::Fd(self.u32()?),
            // Read only, never sent: kept in the nearest variant.
            b'n' | b'q' => {
                self.align(2);
                Value::U32(u16::from_le_bytes(self.take(2)?.try_into().unwrap_or_default()).into())
            }
            b't' | b'x' | b'd' => {
                self.align(8);
                Value::U64(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
            }
            b's' | b'o' => {
                let n = self.u32()? as usize;
                let s = self.string(n)?;
                if sig[0] == b's' {
                    Value::Str(s)
                } else {
                    Value::Path(s)
                }
            }
            b'g' => {
                let n = self.take(1)?[0] as usize;
                Value::Sig(self.string(n)?)
            }
            b'v' => {
                let n = self.take(1)?[0] as usize;
                let inner = self.string(n)?;
                if one_type(inner.as_bytes())? != inner.len() {
                    return Err(BusError::Malformed("variant signature"));
                }
                Value::Variant(Box::new(self.read(inner.as_bytes())?))
            }
            b'a' => {
                let n = self.u32()? as usize;
                let elem = &sig[1..1 + one_type(&sig[1..])?];
                self.align(align_of(elem[0]));
                let end = self.pos + n;
                let mut items = Vec::new();
                while self.pos < end {
                    items.push(self.read(elem)?);
                }
                Value::Array(String::from_utf8_lossy(elem).into_owned(), items)
            }
            b'(' | b'{' => {
                self.align(8);
                let inner = &sig[1..one_type(sig)? - 1];
                let mut fields = Vec::new();
                let mut i = 0;
                while i < inner.len() {
                    let n = one_type(&inner[i..])?;
                    fields.push(self.read(&inner[i..i + n])?);
                    i += n;
                }
                Value::Struct(fields)
            }
            _ => return Err(BusError::Malformed("unsupported type")),
        })
    }

    fn read_all(&mut self, sig: &[u8]) -> Result<Vec<Value>, BusError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < sig.len() {
            let n = one_type(&sig[i..])?;
            out.push(self.read(&sig[i..i + n])?);
            i += n;
        }
        Ok(out)
    }
}

/// Where the user's manager listens: `$DBUS_SESSION_BUS_ADDRESS` (a `unix:path=` one), else
/// the manager's own socket `$XDG_RUNTIME_DIR/systemd/private`, else the user bus.
pub fn user_bus_path() -> Option<(PathBuf, bool)> {
    if let Ok(address) = std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        for part in address.split(';') {
            let Some(params) = part.strip_prefix("unix:") else {
                continue;
            };
            if let Some(path) = params.split(',').find_map(|p| p.strip_prefix("path=")) {
                return Some((PathBuf::from(path), true));
            }
        }
    }
    let runtime = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty())?);
    let private = runtime.join("systemd/private");
    if private.exists() {
        return Some((private, false));
    }
    let bus = runtime.join("bus");
    bus.exists().then_some((bus, true))
}

pub struct Connection {
    stream: BufReader<UnixStream>,
    serial: u32,
    /// Through a bus daemon (messages need a destination), or straight to the manager.
    via_bus: bool,
    /// The peer accepts file descriptors.
    unix_fds: bool,
    /// The handshake's answers are still to be read (see [`Connection::user_early`]).
    handshake_pending: bool,
    /// The serial of a bus's Hello whose answer is still to be read.
    hello: Option<u32>,
}

/// A call sent whose reply is still to be read.
#[derive(Debug, Clone, Copy)]
pub struct SentCall {
    serial: u32,
}

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

impl Connection {
    /// Connects to the user's systemd manager.
    pub fn user() -> Result<Connection, BusError> {
        let (path, via_bus) = user_bus_path().ok_or(BusError::NoAddress)?;
        Connection::open(&path, via_bus)
    }

    pub fn open(path: &Path, via_bus: bool) -> Result<Connection, BusError> {
        let mut conn = Connection::open_early(path, via_bus)?;
        conn.finish_handshake()?;
        if let Some(hello) = conn.hello {
            conn.reply(hello)?;
        }
        Ok(conn)
    }

    /// Connects to the user's systemd manager and sends the handshake, reading nothing: the
    /// answers are read before the first call goes out (the manager answers meanwhile, while
    /// the caller does something else), and a bus's answer to Hello before its first reply.
    pub fn user_early() -> Result<Connection, BusError> {
        let (path, via_bus) = user_bus_path().ok_or(BusError::NoAddress)?;
        Connection::open_early(&path, via_bus)
    }

    fn open_early(path: &Path, via_bus: bool) -> Result<Connection, BusError> {
        let stream = UnixStream::connect(path).map_err(|source| BusError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        stream.set_read_timeout(Some(Duration::from_secs(25)))?;
        let mut conn = Connection {
            stream: BufReader::new(stream),
            serial: 0,
            via_bus,
            unix_fds: false,
            handshake_pending: true,
            hello: None,
        };
        // As sd-bus: the whole handshake in one write, then its two answers. (Asking with no
        // identity, to be answered DATA, leaves systemd's private socket sometimes silent on
        // the first call.) The identity is our uid outside any user namespace, which is what
        // the peer sees on the socket.
        let hex: String = host_uid()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        conn.stream
            .get_mut()
            .write_all(format!("\0AUTH EXTERNAL {hex}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n").as_bytes())?;
        Ok(conn)
    }

    /// Reads the handshake's answers, once. Messages wait for them: a peer still reading the
    /// handshake refuses descriptors.
    fn finish_handshake(&mut self) -> Result<(), BusError> {
        if !self.handshake_pending {
            return Ok(());
        }
        self.handshake_pending = false;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        if !line.starts_with("OK ") {
            return Err(BusError::Auth(line.trim().to_string()));
        }
        line.clear();
        self.stream.read_line(&mut line)?;
        self.unix_fds = line.starts_with("AGREE_UNIX_FD");
        if self.via_bus {
            let hello = self.send_call(
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                "org.freedesktop.DBus",
                &[],
                &[],
            )?;
            self.hello = Some(hello);
        }
        Ok(())
    }

    /// Calls a method and returns the reply's body.
    pub fn call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        destination: &str,
        args: &[Value],
    ) -> Result<Vec<Value>, BusError> {
        let serial = self.send_call(path, interface, member, destination, args, &[])?;
        self.reply(serial)
    }

    /// Sends a method call and returns its serial, for [`Connection::reply`].
    fn send_call(
        &mut self,
        path: &str,
        interface: &str,
        member: &str,
        destination: &str,
        args: &[Value],
        fds: &[RawFd],
    ) -> Result<u32, BusError> {
        self.finish_handshake()?;
        if !fds.is_empty() && !self.unix_fds {
            return Err(BusError::Malformed("the peer does not accept file descriptors"));
        }
        self.serial += 1;
        let serial = self.serial;
        let mut body = Vec::new();
        for a in args {
            marshal(&mut body, a);
        }
        let signature: String = args.iter().map(Value::signature).collect();
        let field = |code: u8, v: Value| Value::Struct(vec![Value::Byte(code), Value::Variant(Box::new(v))]);
        let mut fields = vec![
            field(1, Value::Path(path.into())),
            field(2, Value::Str(interface.into())),
            field(3, Value::Str(member.into())),
        ];
        if self.via_bus {
            fields.push(field(6, Value::Str(destination.into())));
        }
        if !signature.is_empty() {
            fields.push(field(8, Value::Sig(signature)));
        }
        if !fds.is_empty() {
            fields.push(field(9, Value::U32(fds.len() as u32)));
        }
        let mut msg = vec![b'l', 1, 0, 1];
        msg.extend_from_slice(&(body.len() as u32).to_le_bytes());
        msg.extend_from_slice(&serial.to_le_bytes());
        marshal(&mut msg, &Value::Array("(yv)".into(), fields));
        pad(&mut msg, 8);
        msg.extend_from_slice(&body);
        if fds.is_empty() {
            self.stream.get_mut().write_all(&msg)?;
        } else {
            let iov = [std::io::IoSlice::new(&msg)];
            let cmsg = [nix::sys::socket::ControlMessage::ScmRights(fds)];
            let sent = nix::sys::socket::sendmsg::<()>(
                self.stream.get_ref().as_raw_fd(),
                &iov,
                &cmsg,
                nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)?;
            if sent < msg.len() {
                self.stream.get_mut().write_all(&msg[sent..])?;
            }
        }
        Ok(serial)
    }

    /// The reply to call `serial`; a bus's refusal of our Hello first, if any.
    fn reply(&mut self, serial: u32) -> Result<Vec<Value>, BusError> {
        if let Some(hello) = self.hello.take() {
            if hello != serial {
                self.reply(hello)?;
            }
        }
        loop {
            let (kind, reply_to, error, body) = self.read_message()?;
            // Signals and replies to others (the bus's NameAcquired) are not ours.
            if reply_to != Some(serial) || !(kind == 2 || kind == 3) {
                continue;
            }
            if kind == 3 {
                let message = body
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                return Err(BusError::Call {
                    name: error.unwrap_or_default(),
                    message,
                });
            }
            return Ok(body);
        }
    }

    /// Reads one message: its type, reply serial, error name and body.
    #[allow(clippy::type_complexity)]
    fn read_message(&mut self) -> Result<(u8, Option<u32>, Option<String>, Vec<Value>), BusError> {
        let mut fixed = [0u8; 16];
        self.stream.read_exact(&mut fixed)?;
        if fixed[0] != b'l' {
            return Err(BusError::Malformed("big-endian message"));
        }
        let body_len = u32::from_le_bytes(fixed[4..8].try_into().unwrap_or_default()) as usize;
        let fields_len = u32::from_le_bytes(fixed[12..16].try_into().unwrap_or_default()) as usize;
        let header_end = (16 + fields_len).div_ceil(8) * 8;
        let mut rest = vec![0u8; header_end - 16 + body_len];
        self.stream.read_exact(&mut rest)?;
        let mut whole = fixed.to_vec();
        whole.extend_from_slice(&rest);
        let mut r = Reader {
            data: &whole,
            pos: 12,
        };
        let Value::Array(_, fields) = r.read(b"a(yv)")? else {
            return Err(BusError::Malformed("header"));
        };
        let (mut reply_to, mut error, mut signature) = (None, None, String::new());
        for f in fields {
            let Value::Struct(kv) = f else { continue };
            match (&kv[0], &kv[1]) {
                (Value::Byte(5), Value::Variant(v)) => {
                    if let Value::U32(n) = **v {
                        reply_to = Some(n);
                    }
                }
                (Value::Byte(4), v) => error = v.as_str().map(str::to_string),
                (Value::Byte(8), v) => signature = v.as_str().unwrap_or_default().to_string(),
                _ => {}
            }
        }
        let mut body = Reader {
            data: &whole[header_end..],
            pos: 0,
        };
        let values = body.read_all(signature.as_bytes())?;
        Ok((fixed[1], reply_to, error, values))
    }

    fn manager(&mut self, member: &str, args: &[Value]) -> Result<Vec<Value>, BusError> {
        self.call(MANAGER_PATH, MANAGER, member, SYSTEMD, args)
    }

    /// StartTransientUnit(name, "fail", properties, no auxiliary units): returns the job.
    pub fn start_transient_unit(&mut self, name: &str, properties: Vec<Value>) -> Result<String, BusError> {
        self.start_transient_units(name, properties, vec![])
    }

    /// StartTransientUnit with auxiliary units (`(name, properties)`, such as a timer's service).
    pub fn start_transient_units(
        &mut self,
        name: &str,
        properties: Vec<Value>,
        aux: Vec<(String, Vec<Value>)>,
    ) -> Result<String, BusError> {
        let call = self.send_start_transient_unit(name, properties, aux, &[])?;
        self.job(call)
    }

    /// Sends StartTransientUnit (with descriptors such as `StandardInputFileDescriptor`) without
    /// waiting: [`Connection::job`] reads its answer.
    pub fn send_start_transient_unit(
        &mut self,
        name: &str,
        properties: Vec<Value>,
        aux: Vec<(String, Vec<Value>)>,
        fds: &[RawFd],
    ) -> Result<SentCall, BusError> {
        let aux = aux
            .into_iter()
            .map(|(n, p)| Value::Struct(vec![Value::Str(n), Value::Array("(sv)".into(), p)]))
            .collect();
        let serial = self.send_call(
            MANAGER_PATH,
            MANAGER,
            "StartTransientUnit",
            SYSTEMD,
            &[
                Value::Str(name.into()),
                Value::Str("fail".into()),
                Value::Array("(sv)".into(), properties),
                Value::Array("(sa(sv))".into(), aux),
            ],
            fds,
        )?;
        Ok(SentCall { serial })
    }

    /// The job a start sent with [`Connection::send_start_transient_unit`] made.
    pub fn job(&mut self, call: SentCall) -> Result<String, BusError> {
        let reply = self.reply(call.serial)?;
        Ok(first_str(&reply))
    }

    /// StopUnit(name, "replace"): returns the job.
    pub fn stop_unit(&mut self, name: &str) -> Result<String, BusError> {
        let reply = self.manager(
            "StopUnit",
            &[Value::Str(name.into()), Value::Str("replace".into())],
        )?;
        Ok(first_str(&reply))
    }

    /// StartUnit(name, "replace"): returns the job.
    pub fn start_unit(&mut self, name: &str) -> Result<String, BusError> {
        let reply = self.manager(
            "StartUnit",
            &[Value::Str(name.into()), Value::Str("replace".into())],
        )?;
        Ok(first_str(&reply))
    }

    /// Reload (`systemctl --user daemon-reload`): returns once the manager has reloaded.
    pub fn reload(&mut self) -> Result<(), BusError> {
        self.manager("Reload", &[]).map(drop)
    }

    /// RestartUnit(name, "replace"): returns the job.
    pub fn restart_unit(&mut self, name: &str) -> Result<String, BusError> {
        let reply = self.manager(
            "RestartUnit",
            &[Value::Str(name.into()), Value::Str("replace".into())],
        )?;
        Ok(first_str(&reply))
    }

    /// ResetFailedUnit(name) (`systemctl --user reset-failed`): forgets a failed state and the
    /// start limit a unit that failed too often has hit, which refuses even a manual start.
    pub fn reset_failed_unit(&mut self, name: &str) -> Result<(), BusError> {
        self.manager("ResetFailedUnit", &[Value::Str(name.into())])
            .map(drop)
    }

    /// A property of the manager (`UnitPath`, `Environment`, ...).
    pub fn manager_property(&mut self, name: &str) -> Result<Value, BusError> {
        let reply = self.call(
            MANAGER_PATH,
            "org.freedesktop.DBus.Properties",
            "Get",
            SYSTEMD,
            &[Value::Str(MANAGER.into()), Value::Str(name.into())],
        )?;
        match reply.into_iter().next() {
            Some(Value::Variant(v)) => Ok(*v),
            _ => Err(BusError::Malformed("property reply")),
        }
    }

    /// A property of a unit's `org.freedesktop.systemd1.Unit` interface (`ActiveState`,
    /// `SubState`, `InvocationID`, ...).
    pub fn unit_property(&mut self, name: &str, property: &str) -> Result<Value, BusError> {
        let reply = self.manager("LoadUnit", &[Value::Str(name.into())])?;
        let path = reply
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let reply = self.call(
            &path,
            "org.freedesktop.DBus.Properties",
            "Get",
            SYSTEMD,
            &[
                Value::Str("org.freedesktop.systemd1.Unit".into()),
                Value::Str(property.into()),
            ],
        )?;
        match reply.into_iter().next() {
            Some(Value::Variant(v)) => Ok(*v),
            _ => Err(BusError::Malformed("property reply")),
        }
    }

    /// Every property of a unit's `org.freedesktop.systemd1.Unit` interface, read at one
    /// instant (GetAll): for values that must agree, as a state and the run (`InvocationID`) it
    /// belongs to; separate calls may see a restarting unit at two different moments.
    pub fn unit_properties(
        &mut self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, Value>, BusError> {
        let reply = self.manager("LoadUnit", &[Value::Str(name.into())])?;
        let path = first_str(&reply);
        let reply = self.call(
            &path,
            "org.freedesktop.DBus.Properties",
            "GetAll",
            SYSTEMD,
            &[Value::Str("org.freedesktop.systemd1.Unit".into())],
        )?;
        let Some(Value::Array(_, entries)) = reply.into_iter().next() else {
            return Err(BusError::Malformed("GetAll reply"));
        };
        let mut out = std::collections::BTreeMap::new();
        for entry in entries {
            if let Value::Struct(mut kv) = entry {
                if let (Some(Value::Variant(v)), Some(Value::Str(k))) = (kv.pop(), kv.pop()) {
                    out.insert(k, *v);
                }
            }
        }
        Ok(out)
    }

    /// The `ActiveState` of a unit (`active`, `inactive`, `failed`, ...).
    pub fn unit_active_state(&mut self, name: &str) -> Result<String, BusError> {
        Ok(self
            .unit_property(name, "ActiveState")?
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

/// Our uid as the kernel shows it to a peer in the initial user namespace.
fn host_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .find(|&(inside, _, count)| uid >= inside && uid - inside < count)
        .map_or(uid, |(inside, outside, _)| outside + (uid - inside))
}

/// The reply's first value as a string (a job's or unit's object path), empty if it has none.
fn first_str(reply: &[Value]) -> String {
    reply
        .first()
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marshals_and_reads_back() {
        let values = vec![
            Value::Str("burrow-x.scope".into()),
            Value::Array(
                "(sv)".into(),
                vec![
                    Value::property("PIDs", Value::Array("u".into(), vec![Value::U32(42)])),
                    Value::property("Description", Value::Str("d".into())),
                    Value::property("TimeoutUSec", Value::U64(7)),
                ],
            ),
            Value::Array("(sa(sv))".into(), vec![]),
        ];
        let mut buf = Vec::new();
        for v in &values {
            marshal(&mut buf, v);
        }
        let sig: String = values.iter().map(Value::signature).collect();
        assert_eq!(sig, "sa(sv)a(sa(sv))");
        let back = Reader { data: &buf, pos: 0 }.read_all(sig.as_bytes()).unwrap();
        assert_eq!(back, values);
    }

    #[test]
    fn empty_array_of_structs_pads_to_eight() {
        let mut buf = vec![0u8]; // one byte in: the length goes at 4, the elements at 8
        marshal(&mut buf, &Value::Array("(sv)".into(), vec![]));
        assert_eq!(buf.len(), 8);
    }

    #[test]
    fn signature_lengths() {
        assert_eq!(one_type(b"a(sv)x").unwrap(), 5);
        assert_eq!(one_type(b"a{sv}").unwrap(), 5);
        assert!(one_type(b"(ss").is_err());
    }
}
