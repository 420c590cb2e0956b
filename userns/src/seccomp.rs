//! Seccomp: Podman's default profile, profile resolution, BPF compilation and loading.
//!
//! The flow is split so that nothing expensive happens in the forked child:
//! 1. [`profile_from_json`] (parent): a Docker/Podman or OCI profile becomes the OCI `LinuxSeccomp`
//!    for `config.json`, with `includes`/`excludes` resolved for this container.
//! 2. [`compile`] / [`compile_cached`] (parent): libseccomp turns it into a classic BPF [`Program`].
//! 3. [`install`] (child, between fork and exec): one raw `seccomp(2)` call, no allocation.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use nix::errno::Errno;
use nix::sys::memfd::{memfd_create, MFdFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use serde::{Deserialize, Deserializer};

/// Podman's default profile, verbatim from containers/container-libs
/// `common/pkg/seccomp/seccomp.json` (the successor of containers/common; commit 7a5bc89).
const DEFAULT_PROFILE: &str = include_str!("seccomp/default.json");

/// The kernel rejects classic BPF programs longer than this (`BPF_MAXINSNS`).
const BPF_MAXINSNS: usize = 4096;
const INSN_SIZE: usize = std::mem::size_of::<libc::sock_filter>();

/// libseccomp's `SCMP_FLTATR_CTL_OPTIMIZE`: 2 sorts syscalls into a binary tree. Part of the
/// cache key.
const OPTIMIZE_LEVEL: u32 = 2;
/// Bumped whenever the cache file layout or the compiler's output changes meaning.
const CACHE_MAGIC: &[u8; 8] = b"BRWBPF01";
const CACHE_HEADER: usize = CACHE_MAGIC.len() + 16;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile: invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("seccomp profile: unknown action {0:?}")]
    UnknownAction(String),
    #[error("seccomp profile: unknown architecture {0:?}")]
    UnknownArch(String),
    #[error("seccomp profile: unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("seccomp profile: unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("seccomp profile: unknown errno {0:?}")]
    UnknownErrno(String),
    #[error("seccomp profile: invalid minKernel {0:?} (want \"MAJOR.MINOR\")")]
    BadKernelVersion(String),
    #[error("seccomp profile: {0}")]
    Invalid(String),
    #[error("seccomp: {0} is not supported")]
    Unsupported(&'static str),
    #[error("seccomp: {context}: {source}")]
    Libseccomp {
        context: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: exporting BPF: {0}")]
    Io(#[from] std::io::Error),
    #[error("seccomp: BPF program is invalid: {0}")]
    BadProgram(&'static str),
    #[error("seccomp: loading filter: {0}")]
    Install(Errno),
    #[error(
        "seccomp: loading filter: {0} (without no_new_privs the process needs CAP_SYS_ADMIN in its user namespace)"
    )]
    InstallDenied(Errno),
    #[error("seccomp: loading filter: thread {0} could not be synchronized (TSYNC)")]
    Tsync(libc::c_long),
}

fn scmp_err(context: &'static str) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    move |source| SeccompError::Libseccomp {
        context: context.into(),
        source,
    }
}

/// Like `scmp_err`, naming the arch or syscall; formats only on the error path.
fn scmp_err_for<'a>(
    what: &'static str,
    name: &'a str,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError + 'a {
    move |source| SeccompError::Libseccomp {
        context: format!("{what} {name}"),
        source,
    }
}

/// The default profile, as shipped by Podman (Docker/Podman format).
pub fn default_profile_json() -> &'static str {
    DEFAULT_PROFILE
}

// ---------------------------------------------------------------------------------------------
// Profile format (a superset: an OCI `LinuxSeccomp` is a Docker/Podman profile without
// archMap/includes/excludes, so one parser reads both).
// ---------------------------------------------------------------------------------------------

/// Go's encoding/json accepts `null` for slices and strings; so do we.
fn null_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default, deserialize_with = "null_default")]
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    default_errno: String,
    #[serde(default, deserialize_with = "null_default")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "null_default")]
    syscalls: Vec<Syscall>,
    #[serde(default, deserialize_with = "null_default")]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default, deserialize_with = "null_default")]
    sub_architectures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    #[serde(default, deserialize_with = "null_default")]
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    names: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    action: String,
    #[serde(default, deserialize_with = "null_default")]
    args: Vec<Arg>,
    #[serde(default, deserialize_with = "null_default")]
    includes: Filter,
    #[serde(default, deserialize_with = "null_default")]
    excludes: Filter,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_default")]
    errno: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "null_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    arches: Vec<String>,
    /// Docker extension ("5.8"); Podman's parser ignores it.
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Where the profile is being resolved: the container's capabilities, the native arch and kernel.
struct Host {
    caps: HashSet<String>,
    /// libseccomp-golang spelling of the native arch ("amd64"), used by `includes.arches`.
    arch: &'static str,
    /// `SCMP_ARCH_*` name of the native arch, used to pick the `archMap` entry.
    scmp_arch: &'static str,
    kernel: (u32, u32),
}

/// Parses a Docker/Podman or OCI seccomp profile and resolves it for a container whose bounding
/// set is `capabilities` ("CAP_SYS_ADMIN" etc.), on this machine's architecture and kernel.
///
/// Resolution follows Podman (containers/common `setupSeccomp`): a rule is dropped if any of its
/// `excludes.caps` is in the set or if not all of its `includes.caps` are; `arches` compare
/// against the native arch; `archMap` adds the native arch and its sub-architectures (x86_64 →
/// x86, x32). `minKernel` (Docker) compares against the running kernel's major.minor.
pub fn profile_from_json(json: &str, capabilities: &[String]) -> Result<LinuxSeccomp, SeccompError> {
    let profile: Profile = serde_json::from_str(json)?;
    let (arch, scmp_arch) = native_arch();
    let host = Host {
        caps: capabilities.iter().map(|c| normalize_cap(c)).collect(),
        arch,
        scmp_arch,
        kernel: kernel_version(),
    };
    resolve(profile, &host)
}

fn normalize_cap(cap: &str) -> String {
    let upper = cap.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn resolve(profile: Profile, host: &Host) -> Result<LinuxSeccomp, SeccompError> {
    if profile.default_action.is_empty() {
        return Err(SeccompError::Invalid("defaultAction is missing".into()));
    }
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(SeccompError::Invalid(
            "'architectures' and 'archMap' were specified, use either 'architectures' or 'archMap'".into(),
        ));
    }

    let mut arches: Vec<Arch> = Vec::new();
    for a in &profile.architectures {
        arches.push(parse_arch(a)?);
    }
    if let Some(entry) = profile.arch_map.iter().find(|m| m.architecture == host.scmp_arch) {
        arches.push(parse_arch(&entry.architecture)?);
        for sub in &entry.sub_architectures {
            arches.push(parse_arch(sub)?);
        }
    }

    let mut flags = Vec::new();
    for f in &profile.flags {
        flags.push(
            parse_enum::<LinuxSeccompFilterFlag>(f).ok_or_else(|| SeccompError::UnknownFlag(f.clone()))?,
        );
    }

    let mut syscalls = Vec::new();
    for call in profile.syscalls {
        if !call.name.is_empty() && !call.names.is_empty() {
            return Err(SeccompError::Invalid(
                "'name' and 'names' were specified, use either 'name' or 'names'".into(),
            ));
        }
        // Validate every rule, not only the ones that apply here: a typo in a rule for another
        // arch or capability set should fail on every machine, not only on some.
        let action = parse_action(&call.action)?;
        let errno = errno_value(&call.errno, call.errno_ret)?;
        let mut args = Vec::with_capacity(call.args.len());
        for a in &call.args {
            let op = parse_enum::<LinuxSeccompOperator>(&a.op)
                .ok_or_else(|| SeccompError::UnknownOperator(a.op.clone()))?;
            let mut arg = LinuxSeccompArgBuilder::default()
                .index(a.index)
                .value(a.value)
                .op(op);
            if let Some(two) = a.value_two {
                arg = arg.value_two(two);
            }
            args.push(arg.build().map_err(|e| SeccompError::Invalid(e.to_string()))?);
        }
        if !applies(&call, host)? {
            continue;
        }
        let names = if call.name.is_empty() {
            call.names
        } else {
            vec![call.name]
        };
        if names.is_empty() {
            continue;
        }
        let mut sc = LinuxSyscall::default();
        sc.set_names(names);
        sc.set_action(action);
        sc.set_errno_ret(errno);
        sc.set_args(if args.is_empty() { None } else { Some(args) });
        syscalls.push(sc);
    }

    let mut out = LinuxSeccomp::default();
    out.set_default_action(parse_action(&profile.default_action)?);
    out.set_default_errno_ret(errno_value(&profile.default_errno, profile.default_errno_ret)?);
    out.set_architectures(if arches.is_empty() { None } else { Some(arches) });
    out.set_flags(if flags.is_empty() { None } else { Some(flags) });
    out.set_listener_path(profile.listener_path);
    out.set_listener_metadata(profile.listener_metadata);
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

fn applies(call: &Syscall, host: &Host) -> Result<bool, SeccompError> {
    let ex = &call.excludes;
    if ex.arches.iter().any(|a| a == host.arch) || ex.caps.iter().any(|c| host.caps.contains(c)) {
        return Ok(false);
    }
    if let Some(v) = &ex.min_kernel {
        if host.kernel >= parse_kernel_version(v)? {
            return Ok(false);
        }
    }
    let inc = &call.includes;
    if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch) {
        return Ok(false);
    }
    if !inc.caps.iter().all(|c| host.caps.contains(c)) {
        return Ok(false);
    }
    if let Some(v) = &inc.min_kernel {
        if host.kernel < parse_kernel_version(v)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads an OCI enum from its JSON spelling, so we accept exactly what `config.json` accepts.
fn parse_enum<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

fn parse_action(s: &str) -> Result<LinuxSeccompAction, SeccompError> {
    parse_enum(s).ok_or_else(|| SeccompError::UnknownAction(s.to_owned()))
}

fn parse_arch(s: &str) -> Result<Arch, SeccompError> {
    parse_enum(s).ok_or_else(|| SeccompError::UnknownArch(s.to_owned()))
}

/// Podman: a non-empty `errno` (a name or a number) wins over the older numeric `errnoRet`.
fn errno_value(name: &str, ret: Option<u32>) -> Result<Option<u32>, SeccompError> {
    if name.is_empty() {
        return Ok(ret);
    }
    if let Ok(n) = name.parse::<u32>() {
        return Ok(Some(n));
    }
    errno_by_name(name)
        .map(Some)
        .ok_or_else(|| SeccompError::UnknownErrno(name.to_owned()))
}

fn parse_kernel_version(s: &str) -> Result<(u32, u32), SeccompError> {
    let bad = || SeccompError::BadKernelVersion(s.to_owned());
    let (major, minor) = s.split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// major.minor of the running kernel; (0, 0) if uname is unreadable, so `minKernel` rules are
/// left out rather than wrongly included.
fn kernel_version() -> (u32, u32) {
    // SAFETY: utsname is plain old data; uname fills it and NUL-terminates release.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return (0, 0);
    }
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// The native arch as libseccomp-golang's `ScmpArch.String()` and as an `SCMP_ARCH_*` name.
fn native_arch() -> (&'static str, &'static str) {
    match ScmpArch::native() {
        ScmpArch::X86 => ("x86", "SCMP_ARCH_X86"),
        ScmpArch::X8664 => ("amd64", "SCMP_ARCH_X86_64"),
        ScmpArch::X32 => ("x32", "SCMP_ARCH_X32"),
        ScmpArch::Arm => ("arm", "SCMP_ARCH_ARM"),
        ScmpArch::Aarch64 => ("arm64", "SCMP_ARCH_AARCH64"),
        ScmpArch::Loongarch64 => ("loong64", "SCMP_ARCH_LOONGARCH64"),
        ScmpArch::M68k => ("m68k", "SCMP_ARCH_M68K"),
        ScmpArch::Mips => ("mips", "SCMP_ARCH_MIPS"),
        ScmpArch::Mips64 => ("mips64", "SCMP_ARCH_MIPS64"),
        ScmpArch::Mips64N32 => ("mips64n32", "SCMP_ARCH_MIPS64N32"),
        ScmpArch::Mipsel => ("mipsel", "SCMP_ARCH_MIPSEL"),
        ScmpArch::Mipsel64 => ("mipsel64", "SCMP_ARCH_MIPSEL64"),
        ScmpArch::Mipsel64N32 => ("mipsel64n32", "SCMP_ARCH_MIPSEL64N32"),
        ScmpArch::Ppc => ("ppc", "SCMP_ARCH_PPC"),
        ScmpArch::Ppc64 => ("ppc64", "SCMP_ARCH_PPC64"),
        ScmpArch::Ppc64Le => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        ScmpArch::S390 => ("s390", "SCMP_ARCH_S390"),
        ScmpArch::S390X => ("s390x", "SCMP_ARCH_S390X"),
        ScmpArch::Parisc => ("parisc", "SCMP_ARCH_PARISC"),
        ScmpArch::Parisc64 => ("parisc64", "SCMP_ARCH_PARISC64"),
        ScmpArch::Riscv64 => ("riscv64", "SCMP_ARCH_RISCV64"),
        ScmpArch::Sh => ("sh", "SCMP_ARCH_SH"),
        ScmpArch::Sheb => ("sheb", "SCMP_ARCH_SHEB"),
        _ => ("", ""),
    }
}

macro_rules! errno_table {
    ($($name:ident)*) => {
        fn errno_by_name(name: &str) -> Option<u32> {
            match name {
                $(stringify!($name) => Some(libc::$name as u32),)*
                _ => None,
            }
        }
    };
}

errno_table! {
    EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM EACCES EFAULT ENOTBLK
    EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ENFILE EMFILE ENOTTY ETXTBSY EFBIG ENOSPC ESPIPE
    EROFS EMLINK EPIPE EDOM ERANGE EDEADLK ENAMETOOLONG ENOLCK ENOSYS ENOTEMPTY ELOOP EWOULDBLOCK ENOMSG
    EIDRM ECHRNG EL2NSYNC EL3HLT EL3RST ELNRNG EUNATCH ENOCSI EL2HLT EBADE EBADR EXFULL ENOANO EBADRQC
    EBADSLT EDEADLOCK EBFONT ENOSTR ENODATA ETIME ENOSR ENONET ENOPKG EREMOTE ENOLINK EADV ESRMNT ECOMM
    EPROTO EMULTIHOP EDOTDOT EBADMSG EOVERFLOW ENOTUNIQ EBADFD EREMCHG ELIBACC ELIBBAD ELIBSCN ELIBMAX
    ELIBEXEC EILSEQ ERESTART ESTRPIPE EUSERS ENOTSOCK EDESTADDRREQ EMSGSIZE EPROTOTYPE ENOPROTOOPT
    EPROTONOSUPPORT ESOCKTNOSUPPORT EOPNOTSUPP ENOTSUP EPFNOSUPPORT EAFNOSUPPORT EADDRINUSE EADDRNOTAVAIL
    ENETDOWN ENETUNREACH ENETRESET ECONNABORTED ECONNRESET ENOBUFS EISCONN ENOTCONN ESHUTDOWN ETOOMANYREFS
    ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH EALREADY EINPROGRESS ESTALE EUCLEAN ENOTNAM ENAVAIL
    EISNAM EREMOTEIO EDQUOT ENOMEDIUM EMEDIUMTYPE ECANCELED ENOKEY EKEYEXPIRED EKEYREVOKED EKEYREJECTED
    EOWNERDEAD ENOTRECOVERABLE ERFKILL EHWPOISON
}

// ---------------------------------------------------------------------------------------------
// Compilation
// ---------------------------------------------------------------------------------------------

/// A classic BPF seccomp program plus the `seccomp(2)` flags it must be loaded with.
///
/// Always non-empty and at most 4096 instructions: the constructors check, so [`install`] can
/// hand it to the kernel without further checks.
#[derive(Clone)]
pub struct Program {
    filter: Vec<libc::sock_filter>,
    flags: libc::c_uint,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("instructions", &self.filter.len())
            .field("flags", &self.flags)
            .finish()
    }
}

impl PartialEq for Program {
    fn eq(&self, other: &Self) -> bool {
        self.flags == other.flags && self.to_bytes() == other.to_bytes()
    }
}

impl Program {
    /// Builds a program from raw BPF (native endian `struct sock_filter` array), as exported by
    /// libseccomp. Rejects empty, ragged or oversized input.
    pub fn from_bytes(bytes: &[u8], flags: libc::c_uint) -> Result<Self, SeccompError> {
        if bytes.is_empty() {
            return Err(SeccompError::BadProgram("empty"));
        }
        if !bytes.len().is_multiple_of(INSN_SIZE) {
            return Err(SeccompError::BadProgram(
                "length is not a multiple of sizeof(struct sock_filter)",
            ));
        }
        if bytes.len() / INSN_SIZE > BPF_MAXINSNS {
            return Err(SeccompError::BadProgram("more than 4096 instructions"));
        }
        let filter = bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Self { filter, flags })
    }

    /// The program as raw bytes, the layout `from_bytes` reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.filter.len() * INSN_SIZE);
        for i in &self.filter {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.filter
    }

    /// `SECCOMP_FILTER_FLAG_*` bits passed to `seccomp(2)`.
    pub fn flags(&self) -> libc::c_uint {
        self.flags
    }
}

/// Compiles a resolved profile into BPF with libseccomp, for every architecture it lists.
///
/// Unknown syscall names are skipped silently, as runc and crun do: profiles name syscalls that
/// only exist on other arches or newer kernels/libseccomp. `SCMP_ACT_NOTIFY` is refused.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Program, SeccompError> {
    let default = scmp_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(scmp_err("creating filter"))?;
    // libseccomp sets no_new_privs on load by default. We only export, but keep the context
    // honest: burrow sets NNP only for `--security-opt no-new-privileges`, so setuid binaries
    // (sudo, ping with file caps) keep working in containers, as with Podman.
    ctx.set_ctl_nnp(false)
        .map_err(scmp_err("clearing no_new_privs attribute"))?;
    // A binary tree of syscall numbers instead of a linear list: the kernel loads it in about
    // 0.55 ms instead of 1.05 (on every container start), and each of the container's system
    // calls walks O(log n) comparisons instead of O(n).
    ctx.set_ctl_optimize(OPTIMIZE_LEVEL)
        .map_err(scmp_err("asking for a binary-tree filter"))?;

    for arch in seccomp.architectures().iter().flatten() {
        let name = enum_name(arch);
        let scmp = ScmpArch::from_str(&name).map_err(|_| SeccompError::UnknownArch(name.clone()))?;
        ctx.add_arch(scmp)
            .map_err(scmp_err_for("adding architecture", &name))?;
    }

    for call in seccomp.syscalls().iter().flatten() {
        let action = scmp_action(call.action(), call.errno_ret())?;
        // libseccomp refuses rules whose action is the default one; they are no-ops anyway.
        if action == default {
            continue;
        }
        let conds = conditions(call.args().as_deref().unwrap_or_default())?;
        for name in call.names() {
            // Resolves against the native arch; names known only on another arch in the filter
            // (x86's socketcall on x86_64) come back as pseudo-numbers libseccomp maps per arch.
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            add_rule(&mut ctx, action, nr, &conds).map_err(scmp_err_for("adding rule for", name))?;
        }
    }

    let bytes = export_bpf(&ctx)?;
    Program::from_bytes(&bytes, filter_flags(seccomp))
}

/// OCI args → libseccomp comparisons, grouped into rules the way runc does it.
fn conditions(args: &[LinuxSeccompArg]) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut per_index = [0usize; 6];
    let mut conds = Vec::with_capacity(args.len());
    for a in args {
        let slot = per_index.get_mut(a.index()).ok_or_else(|| {
            SeccompError::Invalid(format!("argument index {} is out of range 0-5", a.index()))
        })?;
        *slot += 1;
        let op = match a.op() {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            // OCI: value is the mask, valueTwo the datum.
            LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(a.value()),
        };
        let datum = match a.op() {
            LinuxSeccompOperator::ScmpCmpMaskedEq => a.value_two().unwrap_or(0),
            _ => a.value(),
        };
        conds.push(ScmpArgCompare::new(a.index() as u32, op, datum));
    }
    // One rule may compare each argument only once. When a profile compares the same argument
    // twice, fall back to one rule per comparison (runc's behaviour).
    if per_index.iter().any(|&n| n > 1) {
        Ok(conds.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![conds])
    }
}

fn add_rule(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    nr: ScmpSyscall,
    rules: &[Vec<ScmpArgCompare>],
) -> Result<(), libseccomp::error::SeccompError> {
    for conds in rules {
        ctx.add_rule_conditional(action, nr, conds)?;
    }
    Ok(())
}

fn scmp_action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, SeccompError> {
    let ret = |default: u32| -> Result<u16, SeccompError> {
        let v = errno.unwrap_or(default);
        u16::try_from(v).map_err(|_| SeccompError::Invalid(format!("errnoRet {v} does not fit in 16 bits")))
    };
    Ok(match action {
        // SCMP_ACT_KILL is libseccomp's old name for KILL_THREAD.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret(libc::EPERM as u32)?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret(libc::EPERM as u32)?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => return Err(SeccompError::Unsupported("SCMP_ACT_NOTIFY")),
    })
}

fn filter_flags(seccomp: &LinuxSeccomp) -> libc::c_uint {
    let mut flags: libc::c_ulong = 0;
    for f in seccomp.flags().iter().flatten() {
        flags |= match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => 1 << 5,
        };
    }
    flags as libc::c_uint
}

/// The JSON spelling of an OCI enum ("SCMP_ARCH_X86_64").
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `seccomp_export_bpf_mem` needs libseccomp 2.6 (Debian 12 has 2.5.4), so export into a memfd.
/// A pipe could deadlock once the program outgrows the pipe buffer.
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let fd = memfd_create(c"burrow-seccomp", MFdFlags::MFD_CLOEXEC).map_err(std::io::Error::from)?;
    ctx.export_bpf(&fd).map_err(scmp_err("exporting BPF"))?;
    let mut file = File::from(fd);
    file.seek(SeekFrom::Start(0))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------------------------

/// [`compile`] with an on-disk cache keyed by the resolved profile, libseccomp's version and the
/// native arch. Writing the cache is best effort: a failure there never fails the container.
///
/// Cache files are only used if they are ours (owner = euid, not group/other writable), carry
/// our magic and a SHA-256 of the program that matches; anything else is recompiled and
/// replaced. A filter read from a file another user could write would let them disable the
/// sandbox (the class of CVE-2019-5736, where runtime state on disk was trusted).
pub fn compile_cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<Program, SeccompError> {
    let key = cache_key(seccomp)?;
    let path = cache_dir.join(format!("{key}.bpf"));
    let flags = filter_flags(seccomp);
    if let Some(program) = read_cache(&path, flags) {
        return Ok(program);
    }
    let program = compile(seccomp)?;
    let _ = write_cache(cache_dir, &path, &program);
    Ok(program)
}

fn cache_key(seccomp: &LinuxSeccomp) -> Result<String, SeccompError> {
    let version = libseccomp::ScmpVersion::current()
        .map(|v| (v.major, v.minor, v.micro))
        .unwrap_or_default();
    let header = format!(
        "libseccomp {}.{}.{} {} optimize {OPTIMIZE_LEVEL}\n",
        version.0,
        version.1,
        version.2,
        native_arch().1
    );
    let json = serde_json::to_vec(seccomp)?;
    Ok(digest(&[CACHE_MAGIC, header.as_bytes(), &json])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// 128 bits from two domain-separated std hashers (SipHash today). Not a cryptographic hash, and
/// it need not be: it names files only we can write (see `read_cache`) and catches torn or
/// damaged writes. If a Rust release changes std's algorithm, entries just miss and are rebuilt.
fn digest(parts: &[&[u8]]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (half, domain) in out.chunks_exact_mut(8).zip([b"burrow-a", b"burrow-b"]) {
        let mut h = std::hash::DefaultHasher::new();
        h.write(domain);
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}

fn read_cache(path: &Path, flags: libc::c_uint) -> Option<Program> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let max = (CACHE_HEADER + BPF_MAXINSNS * INSN_SIZE) as u64;
    if !meta.is_file() || meta.uid() != euid || meta.mode() & 0o022 != 0 || meta.len() > max {
        return None;
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut data).ok()?;
    let (header, body) = data.split_at_checked(CACHE_HEADER)?;
    if &header[..CACHE_MAGIC.len()] != CACHE_MAGIC || header[CACHE_MAGIC.len()..] != digest(&[body]) {
        return None;
    }
    Program::from_bytes(body, flags).ok()
}

fn write_cache(dir: &Path, path: &Path, program: &Program) -> std::io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let body = program.to_bytes();
    let mut data = Vec::with_capacity(CACHE_HEADER + body.len());
    data.extend_from_slice(CACHE_MAGIC);
    data.extend_from_slice(&digest(&[&body]));
    data.extend_from_slice(&body);

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{}.{}.{nanos}.tmp", std::process::id(), data.len()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&data))
        .and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Loads `program` into the calling thread with `seccomp(SECCOMP_SET_MODE_FILTER)`, falling back
/// to `prctl(PR_SET_SECCOMP)` on kernels without seccomp(2).
///
/// Async-signal-safe: no allocation, no locks; meant for the child between fork and exec.
/// It does not set no_new_privs, so the kernel requires CAP_SYS_ADMIN in the caller's user
/// namespace: call it while the process still has it, i.e. *before* capabilities are dropped
/// (runc orders it the same way when NNP is off). With `--security-opt no-new-privileges` the
/// caller sets NNP itself and may install as late as possible instead.
pub fn install(program: &Program) -> Result<(), SeccompError> {
    let prog = libc::sock_fprog {
        // Program guarantees 1..=4096 instructions, so this cannot truncate.
        len: program.filter.len() as libc::c_ushort,
        filter: program.filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at a live, validated program for the duration of the call; the kernel
    // copies it before returning.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(program.flags),
            &raw const prog,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    if rc > 0 {
        return Err(SeccompError::Tsync(rc));
    }
    let mut errno = Errno::last();
    if errno == Errno::ENOSYS && program.flags == 0 {
        // SAFETY: as above; prctl takes the same sock_fprog.
        let rc = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &raw const prog,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        errno = Errno::last();
    }
    Err(match errno {
        Errno::EACCES => SeccompError::InstallDenied(errno),
        _ => SeccompError::Install(errno),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    fn default_caps() -> Vec<String> {
        crate::capabilities::default_capabilities()
    }

    fn host(caps: &[&str]) -> Host {
        Host {
            caps: caps.iter().map(|c| c.to_string()).collect(),
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 18),
        }
    }

    fn resolve_with(json: &str, host: &Host) -> Result<LinuxSeccomp, SeccompError> {
        resolve(serde_json::from_str(json)?, host)
    }

    /// (action, errno) of every rule naming `syscall`, in order.
    fn rules_for(s: &LinuxSeccomp, syscall: &str) -> Vec<(LinuxSeccompAction, Option<u32>)> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|c| c.names().iter().any(|n| n == syscall))
            .map(|c| (c.action(), c.errno_ret()))
            .collect()
    }

    #[test]
    fn default_profile_resolves_for_x86_64() {
        let s = resolve_with(default_profile_json(), &host(&[])).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(libc::ENOSYS as u32));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        assert_eq!(
            rules_for(&s, "arch_prctl"),
            [(LinuxSeccompAction::ScmpActAllow, None)]
        );
        assert!(rules_for(&s, "riscv_flush_icache").is_empty());
        assert!(rules_for(&s, "cacheflush").is_empty());
        assert_eq!(
            rules_for(&s, "kexec_load"),
            [(LinuxSeccompAction::ScmpActErrno, Some(1))]
        );
    }

    #[test]
    fn default_profile_resolves_on_this_machine() {
        let s = profile_from_json(default_profile_json(), &default_caps()).unwrap();
        assert!(s.syscalls().as_ref().is_some_and(|v| v.len() > 20));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(s.architectures().as_ref().map(Vec::len), Some(3));
        }
    }

    #[test]
    fn capability_includes_and_excludes() {
        let with = resolve_with(default_profile_json(), &host(&["CAP_SYS_ADMIN"])).unwrap();
        assert_eq!(
            rules_for(&with, "quotactl"),
            [(LinuxSeccompAction::ScmpActAllow, None)]
        );
        // bpf: allowed via CAP_SYS_ADMIN; its ERRNO rule is excluded by CAP_SYS_ADMIN.
        assert_eq!(
            rules_for(&with, "bpf"),
            [(LinuxSeccompAction::ScmpActAllow, None)]
        );

        let without = resolve_with(default_profile_json(), &host(&[])).unwrap();
        assert_eq!(
            rules_for(&without, "quotactl"),
            [(LinuxSeccompAction::ScmpActErrno, Some(1))]
        );
        assert_eq!(
            rules_for(&without, "bpf"),
            [(LinuxSeccompAction::ScmpActErrno, Some(1))]
        );

        // CAP_BPF alone allows bpf but not quotactl.
        let bpf = resolve_with(default_profile_json(), &host(&["CAP_BPF"])).unwrap();
        assert_eq!(rules_for(&bpf, "bpf"), [(LinuxSeccompAction::ScmpActAllow, None)]);
        assert_eq!(
            rules_for(&bpf, "quotactl"),
            [(LinuxSeccompAction::ScmpActErrno, Some(1))]
        );
    }

    #[test]
    fn capability_names_are_normalized() {
        let caps = vec!["sys_admin".to_string()];
        let s = profile_from_json(default_profile_json(), &caps).unwrap();
        assert_eq!(
            rules_for(&s, "quotactl"),
            [(LinuxSeccompAction::ScmpActAllow, None)]
        );
    }

    #[test]
    fn oci_format_parses() {
        let json = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 3, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]},
                {"names": ["kill"], "action": "SCMP_ACT_LOG"}
            ]
        }"#;
        let s = profile_from_json(json, &[]).unwrap();
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchAarch64][..])
        );
        assert_eq!(
            s.flags().as_deref(),
            Some(&[LinuxSeccompFilterFlag::SeccompFilterFlagLog][..])
        );
        let calls = s.syscalls().as_ref().unwrap();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[2].errno_ret(), Some(13));
        let arg = calls[2].args().as_ref().unwrap()[0];
        assert_eq!((arg.index(), arg.value(), arg.value_two()), (1, 3, Some(1)));
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);

        // Our own output is valid input, and a fixed point.
        let again = profile_from_json(&serde_json::to_string(&s).unwrap(), &[]).unwrap();
        assert_eq!(again, s);
        // ...and it is what an OCI runtime reads from config.json.
        let oci: LinuxSeccomp = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(oci, s);
        let program = compile(&s).unwrap();
        assert_eq!(program.flags(), libc::SECCOMP_FILTER_FLAG_LOG as libc::c_uint);
    }

    #[test]
    fn bad_action_is_named() {
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["read"], "action": "SCMP_ACT_FOO"}]}"#;
        let err = profile_from_json(json, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"seccomp profile: unknown action "SCMP_ACT_FOO""#
        );

        let err = profile_from_json(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"seccomp profile: unknown action "SCMP_ACT_NOPE""#
        );
    }

    #[test]
    fn other_profile_errors_are_clear() {
        let err = profile_from_json("{not json", &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("seccomp profile: invalid JSON:"),
            "{err}"
        );

        let cases = [
            (r#"{"syscalls": []}"#, "seccomp profile: defaultAction is missing"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
                r#"seccomp profile: unknown architecture "SCMP_ARCH_VAX""#,
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                   "action": "SCMP_ACT_ERRNO", "errno": "EWHATEVER"}]}"#,
                r#"seccomp profile: unknown errno "EWHATEVER""#,
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                   "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
                r#"seccomp profile: unknown operator "SCMP_CMP_ABOUT""#,
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["write"],
                   "action": "SCMP_ACT_ALLOW"}]}"#,
                "seccomp profile: 'name' and 'names' were specified, use either 'name' or 'names'",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(profile_from_json(json, &[]).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn errno_names_and_null_fields() {
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOSYS", "defaultErrnoRet": 1,
            "archMap": null,
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errno": "EACCES", "errnoRet": 1, "args": null},
                {"name": "write", "action": "SCMP_ACT_ERRNO", "errno": "42", "includes": null}
            ]}"#;
        let s = profile_from_json(json, &[]).unwrap();
        assert_eq!(s.default_errno_ret(), Some(libc::ENOSYS as u32));
        assert_eq!(
            rules_for(&s, "read"),
            [(LinuxSeccompAction::ScmpActErrno, Some(libc::EACCES as u32))]
        );
        assert_eq!(
            rules_for(&s, "write"),
            [(LinuxSeccompAction::ScmpActErrno, Some(42))]
        );
    }

    #[test]
    fn min_kernel_and_arches() {
        let json = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["old"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["future"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.1"}},
            {"names": ["not_new"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "6.18"}},
            {"names": ["not_amd64"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["amd64"]}},
            {"names": ["arm_only"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}}
        ]}"#;
        let s = resolve_with(json, &host(&[])).unwrap();
        let names: Vec<_> = s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|c| c.names().clone())
            .collect();
        assert_eq!(names, ["old"]);

        let bad = r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["x"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "six"}}]}"#;
        assert!(matches!(
            resolve_with(bad, &host(&[])),
            Err(SeccompError::BadKernelVersion(_))
        ));
    }

    #[test]
    fn compile_default_and_skip_unknown_names() {
        let s = profile_from_json(default_profile_json(), &default_caps()).unwrap();
        let program = compile(&s).unwrap();
        assert!(!program.instructions().is_empty() && program.instructions().len() <= BPF_MAXINSNS);
        assert_eq!(program.flags(), 0);

        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["no_such_syscall_xyz", "getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getppid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}
        ]}"#;
        compile(&profile_from_json(json, &[]).unwrap()).unwrap();
    }

    #[test]
    fn notify_is_refused_at_compile_time() {
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock",
                       "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_NOTIFY"}]}"#;
        let s = profile_from_json(json, &[]).unwrap();
        assert!(matches!(compile(&s), Err(SeccompError::Unsupported(_))));
    }

    #[test]
    fn program_bytes_are_validated() {
        assert!(Program::from_bytes(&[], 0).is_err());
        assert!(Program::from_bytes(&[0; 12], 0).is_err());
        assert!(Program::from_bytes(&vec![0; (BPF_MAXINSNS + 1) * INSN_SIZE], 0).is_err());
        let p = Program::from_bytes(&[6, 0, 0, 0, 0, 0, 0xff, 0x7f], 0).unwrap(); // RET ALLOW
        assert_eq!(p.instructions().len(), 1);
        assert_eq!(Program::from_bytes(&p.to_bytes(), 0).unwrap(), p);
    }

    #[test]
    fn cache_hits_and_recovers_from_damage() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("seccomp");
        let s = profile_from_json(default_profile_json(), &default_caps()).unwrap();
        let fresh = compile(&s).unwrap();

        assert_eq!(compile_cached(&s, &cache).unwrap(), fresh);
        let files: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "no temp files left behind: {files:?}");
        let path = &files[0];
        assert_eq!(read_cache(path, 0).as_ref(), Some(&fresh));
        assert_eq!(compile_cached(&s, &cache).unwrap(), fresh);

        // Truncation to a whole number of instructions still fails the checksum.
        let full = fs::read(path).unwrap();
        fs::write(path, &full[..full.len() - INSN_SIZE]).unwrap();
        assert!(read_cache(path, 0).is_none());
        assert_eq!(compile_cached(&s, &cache).unwrap(), fresh);
        assert_eq!(fs::read(path).unwrap(), full, "damaged entry is rewritten");

        for junk in [&b""[..], &b"short"[..], &full[..CACHE_HEADER]] {
            fs::write(path, junk).unwrap();
            assert_eq!(compile_cached(&s, &cache).unwrap(), fresh);
        }

        // A group-writable entry is not trusted.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o664)).unwrap();
        assert!(read_cache(path, 0).is_none());

        // A different profile gets a different entry.
        let other = profile_from_json(default_profile_json(), &["CAP_SYS_ADMIN".to_string()]).unwrap();
        compile_cached(&other, &cache).unwrap();
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 2);
    }

    const CHILD_OK: i32 = 0;

    /// Runs in the forked child of a multithreaded test process: raw syscalls only, no allocation.
    fn child_checks(program: &Program, have_sys_admin: bool) -> i32 {
        // SAFETY: plain syscalls on stack memory.
        unsafe {
            let mut nnp_set = false;
            if !have_sys_admin && libc::unshare(libc::CLONE_NEWUSER) != 0 {
                // No user namespaces here: fall back to NNP so the filter checks still run.
                if libc::prctl(
                    libc::PR_SET_NO_NEW_PRIVS,
                    1 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
                {
                    return 10;
                }
                nnp_set = true;
            }
            if install(program).is_err() {
                return 11;
            }
            if !nnp_set
                && libc::prctl(
                    libc::PR_GET_NO_NEW_PRIVS,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
            {
                return 12; // install must not set no_new_privs
            }
            if libc::getpid() <= 0 {
                return 13;
            }
            // quotactl: ERRNO(EPERM) for containers without CAP_SYS_ADMIN. The kernel itself would
            // say ENODEV for a NULL device, so EPERM proves the filter answered.
            let rc = libc::syscall(
                libc::SYS_quotactl,
                0 as libc::c_long,
                std::ptr::null::<libc::c_char>(),
                0 as libc::c_long,
                std::ptr::null::<libc::c_void>(),
            );
            if rc != -1 || Errno::last() != Errno::EPERM {
                return 14;
            }
            // add_key is in no rule: the default action answers ENOSYS (the kernel: EFAULT).
            let rc = libc::syscall(
                libc::SYS_add_key,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0 as libc::c_long,
                0 as libc::c_long,
            );
            if rc != -1 || Errno::last() != Errno::ENOSYS {
                return 15;
            }
            let fd = libc::open(c"/proc/self/status".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return 16;
            }
            let mut buf = [0u8; 8192];
            let mut len = 0;
            while len < buf.len() {
                let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
                if n <= 0 {
                    break;
                }
                len += n as usize;
            }
            libc::close(fd);
            if !buf[..len].windows(11).any(|w| w == b"\nSeccomp:\t2") {
                return 17;
            }
        }
        CHILD_OK
    }

    #[test]
    fn default_filter_blocks_in_a_child() {
        // Everything that allocates happens before fork.
        let s = profile_from_json(default_profile_json(), &default_caps()).unwrap();
        let program = compile(&s).unwrap();
        let have_sys_admin =
            caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_ADMIN).unwrap_or(false);

        // SAFETY: the child only runs `child_checks` (raw syscalls) and then _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                let code = child_checks(&program, have_sys_admin);
                // SAFETY: _exit skips atexit handlers and destructors that belong to the parent.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                assert_eq!(
                    status,
                    WaitStatus::Exited(child, CHILD_OK),
                    "child check failed (see exit codes)"
                );
            }
        }
    }
}
