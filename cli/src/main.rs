//! burrow: a rootless, daemonless container engine with Podman's command line.

mod commands;
mod context;
mod exit;
mod userspec;

use clap::Parser;

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
}

#[derive(Debug, Parser)]
#[command(
    name = "burrow",
    about = "Rootless, daemonless containers",
    disable_version_flag = true,
    max_term_width = 100
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

fn main() {
    let cli = match Cli::try_parse() {
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
            eprintln!("Error: {first}\nSee 'burrow --help'");
            std::process::exit(125);
        }
    };
    if cli.version {
        println!("burrow version {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    let Some(command) = cli.command else {
        eprintln!("Error: missing command 'burrow COMMAND'\nTry 'burrow --help' for more information.");
        std::process::exit(125);
    };
    let code = match commands::dispatch(command, &cli.global) {
        Ok(code) => code,
        Err(e) => {
            let code = e.downcast_ref::<ExitError>().map_or(125, |x| x.code);
            eprintln!("Error: {}", exit::message(&e));
            code
        }
    };
    std::process::exit(code);
}
