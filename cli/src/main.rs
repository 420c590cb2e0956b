//! burrow: a rootless, daemonless container engine with Podman's command line.

mod commands;
mod context;
mod docker;
mod exit;
mod health;
mod launch;
mod log;
mod monitor;
mod sdunits;
mod spawn;
mod userspec;

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::exit::ExitError;

/// Global options, as Podman's.
#[derive(Debug, clap::Args)]
pub struct GlobalOptions {
    /// Path to the graph root directory where images and containers are stored
    #[arg(long, global = true, value_name = "PATH")]
    pub root: Option<std::path::PathBuf>,
    /// Path to the run root directory where container state is kept
    #[arg(long, global = true, value_name = "PATH")]
    pub runroot: Option<std::path::PathBuf>,
    /// Log messages at and above this level on stderr
    #[arg(
        long = "log-level",
        global = true,
        value_name = "LEVEL",
        default_value = "warn"
    )]
    pub log_level: log::Level,
}

impl GlobalOptions {
    /// The options of a call that gave none (the store's default places).
    pub fn defaults() -> GlobalOptions {
        GlobalOptions {
            root: None,
            runroot: None,
            log_level: log::Level::Warn,
        }
    }
}

// A flag given twice is no error, the last one counts, as with Podman and Docker (`--rm`
// from an alias and again on the line); lists (`-e`, `-v`, ...) still collect each.
#[derive(Debug, Parser)]
#[command(
    name = "burrow",
    about = "Rootless, daemonless containers",
    disable_version_flag = true,
    max_term_width = 100,
    args_override_self = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    /// Print the version
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<commands::Command>,
}

/// Podman and Docker take `--flag=true` and `--flag=false` for every boolean flag (tools
/// and scripts write them so); clap's flags take no value. On that error the spelling is
/// rewritten, `--flag` or nothing (undoing the same flag before it: the last one counts),
/// and the line parsed again. False when the error is another.
fn respell_boolean(args: &mut Vec<std::ffi::OsString>, e: &clap::Error) -> bool {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::TooManyValues {
        return false;
    }
    let (Some(ContextValue::String(flag)), Some(ContextValue::String(value))) =
        (e.get(ContextKind::InvalidArg), e.get(ContextKind::InvalidValue))
    else {
        return false;
    };
    // Go's strconv.ParseBool, as Podman and Docker parse them.
    let set = match value.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
        "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
        _ => return false,
    };
    let spelled = format!("{flag}={value}");
    let Some(at) = args.iter().position(|a| a.to_str() == Some(spelled.as_str())) else {
        return false;
    };
    if set {
        args[at] = flag.into();
    } else {
        args.remove(at);
        let mut i = 0;
        args.retain(|a| {
            i += 1;
            i > at || a.to_str() != Some(flag.as_str())
        });
    }
    true
}

fn main() {
    // Installed as a systemd user generator (a link named burrow-user-generator): quadlet.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with("-generator"))
    {
        let dirs: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
        let global = GlobalOptions::defaults();
        std::process::exit(commands::sdcmd::generator(&dirs, &global));
    }
    if let Some(code) = commands::helper_modes::run_if_helper() {
        std::process::exit(code);
    }
    commands::run::before_parsing();
    let docker = docker::detect();
    let program = if docker { "docker" } else { "burrow" };
    let mut command = Cli::command().name(program).bin_name(program);
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed = loop {
        match command.try_get_matches_from_mut(&args) {
            Err(e) if respell_boolean(&mut args, &e) => continue,
            other => break other.and_then(|m| Cli::from_arg_matches(&m)),
        }
    };
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 125, as Podman's do; help goes to stdout and exits 0.
            if !e.use_stderr() {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            eprintln!("Error: {first}\nSee '{program} --help'");
            std::process::exit(125);
        }
    };
    log::set_level(cli.global.log_level);
    if cli.version {
        println!("burrow version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let Some(command) = cli.command else {
        eprintln!("Error: missing command '{program} COMMAND'\nTry '{program} --help' for more information.");
        std::process::exit(125);
    };
    let container_code = docker::passes_container_code(&command);
    let result = commands::dispatch(command, &cli.global);
    if let Err(e) = &result {
        eprintln!("Error: {}", exit::message(e));
    }
    let code = match result {
        Ok(code) => code,
        Err(e) => e.downcast_ref::<ExitError>().map_or(125, |x| x.code),
    };
    let code = if docker {
        docker::exit_code(code, container_code)
    } else {
        code
    };
    std::process::exit(code);
}

#[cfg(test)]
mod man_pages {
    //! The man pages in man/ are rendered from the command definitions; this test fails when
    //! they are stale. `BURROW_UPDATE_MAN=1 cargo test -p burrow-cli man_pages` rewrites them.

    use clap::CommandFactory;
    use std::path::PathBuf;

    fn render(cmd: &clap::Command) -> Vec<u8> {
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .render(&mut out)
            .expect("rendering to memory");
        out
    }

    fn pages() -> Vec<(String, Vec<u8>)> {
        let root = super::Cli::command().name("burrow");
        let mut pages = vec![("burrow.1".to_string(), render(&root))];
        // Hidden commands (a monitor's mode) are not for people: no page.
        let visible = |c: &&clap::Command| !c.is_hide_set();
        // Each command on its own, its deferred flags built (and not the root's global ones).
        let built = |c: &clap::Command| {
            let mut c = c.clone();
            c.build();
            c
        };
        let mut stack: Vec<(String, clap::Command)> = root
            .get_subcommands()
            .filter(visible)
            .map(|c| (format!("burrow-{}", c.get_name()), built(c)))
            .collect();
        while let Some((name, cmd)) = stack.pop() {
            // Not the `help` subcommand building added (listed, but no page of its own).
            stack.extend(
                cmd.get_subcommands()
                    .filter(visible)
                    .filter(|c| c.get_name() != "help")
                    .map(|c| (format!("{name}-{}", c.get_name()), c.clone())),
            );
            let cmd = cmd.name(&name).bin_name(&name).display_name(&name);
            pages.push((format!("{name}.1"), render(&cmd)));
        }
        pages
    }

    #[test]
    fn man_pages_are_current() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../man");
        let update = std::env::var_os("BURROW_UPDATE_MAN").is_some();
        for (name, text) in pages() {
            let path = dir.join(&name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &text).unwrap();
            } else {
                let current = std::fs::read(&path).unwrap_or_default();
                assert!(
                    current == text,
                    "man/{name} is stale: run BURROW_UPDATE_MAN=1 cargo test -p burrow-cli man_pages"
                );
            }
        }
    }
}
