//! `burrow exec`: run a process in a running container, in all of its namespaces, with its
//! capabilities, seccomp filter, environment and user (see `burrow_userns::exec`).

use std::path::PathBuf;

use anyhow::bail;
use burrow_userns::{capabilities, exec, foreground, process, seccomp};
use nix::sys::signal::{SigSet, SigmaskHow};
use oci_spec::runtime::Process;

use super::ctrutil;
use crate::context::Engine;
use crate::exit::ExitError;
use crate::{userspec, GlobalOptions};

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Run the exec session in detached mode (backgrounded)
    #[arg(short = 'd', long)]
    detach: bool,
    /// Select the key sequence for detaching a container (accepted; exec sessions are not attachable)
    #[arg(long = "detach-keys", value_name = "KEYS")]
    detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "ENV")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// Pass a number of additional file descriptors into the container
    #[arg(long = "preserve-fds", value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// Give the process extended privileges (every capability)
    #[arg(long)]
    privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Sets the username or UID used and optionally the groupname or GID for the specified command
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// CONTAINER COMMAND [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CONTAINER COMMAND"
    )]
    args: Vec<String>,
}

/// The environment of the exec: the container's, TERM with -t, then --env-file, then -e.
fn build_env(base: &[String], args: &ExecArgs) -> anyhow::Result<Vec<String>> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, kv: &str| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    };
    for e in base {
        set(&mut env, e);
    }
    if args.tty && !env.iter().any(|(k, _)| k == "TERM") {
        set(&mut env, "TERM=xterm");
    }
    for e in super::create::user_env(&args.env_file, &args.env)? {
        set(&mut env, &e);
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// `--preserve-fds N` needs descriptors 3 .. 3+N open before burrow opens any of its own.
fn check_preserved_fds(n: u32) -> anyhow::Result<()> {
    for fd in 3..3 + n as i32 {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            bail!(
                "file descriptor {fd} is not available - the preserve-fds option requires that all file descriptors between 3 and {} be available",
                2 + n
            );
        }
    }
    Ok(())
}

pub fn exec(args: ExecArgs, global: &GlobalOptions) -> anyhow::Result<i32> {
    check_preserved_fds(args.preserve_fds)?;
    let _ = &args.detach_keys;
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let (name, command) = if args.latest {
        let latest = store
            .containers()?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no containers to exec in"))?;
        (latest.id, args.args.clone())
    } else {
        (args.args[0].clone(), args.args[1..].to_vec())
    };
    if command.is_empty() {
        bail!("must provide a non-empty command to start an exec session: invalid argument");
    }
    let (record, launch, pid) = ctrutil::running(store, &name, "create exec sessions")?;
    let base = launch.spec.process().clone().unwrap_or_default();
    let mut proc: Process = base.clone();
    proc.set_args(Some(command));
    proc.set_env(Some(build_env(base.env().as_deref().unwrap_or(&[]), &args)?));
    proc.set_terminal(Some(args.tty));
    if let Some(dir) = &args.workdir {
        if !dir.starts_with('/') {
            bail!("invalid --workdir {dir:?}: must be an absolute path");
        }
        proc.set_cwd(dir.into());
    }
    let mut user = base.user().clone();
    if let Some(spec) = &args.user {
        let read = |p: &str| {
            ctrutil::read_container_file(pid, p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let resolved = userspec::resolve(spec, &read("/etc/passwd"), &read("/etc/group"))
            .map_err(|message| ExitError { code: 126, message })?;
        user.set_uid(resolved.uid);
        user.set_gid(resolved.gid);
        user.set_additional_gids(Some(resolved.additional_gids));
    }
    let container_caps = base.capabilities().clone().unwrap_or_default();
    if args.privileged || user.uid() != base.user().uid() {
        let names = if args.privileged {
            capabilities::resolve(&[], &[], true)?
        } else {
            capabilities::names(container_caps.bounding())
        };
        let mut caps = capabilities::to_oci(&names, user.uid() == 0);
        if user.uid() != 0 {
            // A non-root user keeps what --cap-add gave the container's non-root user.
            caps.set_ambient(container_caps.ambient().clone());
            caps.set_inheritable(container_caps.ambient().clone());
            caps.set_permitted(container_caps.ambient().clone());
            caps.set_effective(container_caps.ambient().clone());
        }
        proc.set_capabilities(Some(caps));
    }
    proc.set_user(user);
    run_process(
        store,
        &record,
        &launch,
        pid,
        &proc,
        &Session {
            interactive: args.interactive,
            preserve_fds: args.preserve_fds,
            detach: args.detach,
        },
    )
}

/// How an exec session is attached.
pub struct Session {
    pub interactive: bool,
    pub preserve_fds: u32,
    pub detach: bool,
}

/// Runs `proc` in the running container (first process `pid`) and returns its exit code
/// (0 at once when detached, after printing the session id).
pub fn run_process(
    store: &burrow_storage::Store,
    record: &burrow_storage::ContainerRecord,
    launch: &crate::launch::Launch,
    pid: i32,
    proc: &Process,
    session: &Session,
) -> anyhow::Result<i32> {
    let program = match launch.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::compile_cached(
            s,
            &store.paths.cache_dir().join("seccomp"),
        )?),
        None => None,
    };
    let forwarded = process::forwarded_signals();
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded), Some(&mut previous))?;
    let outcome = exec::exec(&exec::ExecOptions {
        pid,
        process: proc,
        seccomp: program.as_ref(),
        keep_stdin: session.interactive,
        preserve_fds: session.preserve_fds,
        detach: session.detach,
    })
    .map_err(ExitError::from)
    .and_then(|launched| {
        store.container_event(record, "exec", None);
        if session.detach {
            println!("{}", ctrutil::random_id());
            return Ok(0);
        }
        let code = foreground::wait(launched, session.interactive).map_err(ExitError::from)?;
        store.container_event(record, "exec_died", Some(code));
        Ok(code)
    });
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    Ok(outcome?)
}
