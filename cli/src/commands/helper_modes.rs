//! The hidden helper modes (`__monitor`, `__netstack`) parsed by a command line of their own.
//! Building clap's tree of every burrow command costs about 2 ms of allocations per process,
//! and a detached start runs both helpers on its way: they skip it.

use clap::Parser;

use super::{monitor, netstack};
use crate::GlobalOptions;

#[derive(Debug, Parser)]
#[command(name = "burrow", disable_version_flag = true)]
struct HelperCli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Helper,
}

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
enum Helper {
    #[command(name = "__monitor")]
    Monitor(monitor::MonitorArgs),
    #[command(name = "__netstack")]
    Netstack(netstack::NetstackArgs),
}

/// The helper mode `args` (argv without argv[0]) names: its first argument that is neither a
/// global option nor an option's value.
fn helper_named(args: &[String]) -> Option<&str> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--root" | "--runroot" | "--log-level" => {
                rest.next();
            }
            a if a.starts_with("--") && a.contains('=') => {}
            "__monitor" | "__netstack" => return Some(arg),
            _ => return None,
        }
    }
    None
}

/// Runs the helper mode argv names and returns its exit code; None when it names none.
pub fn run_if_helper() -> Option<i32> {
    let args: Vec<String> = std::env::args().collect();
    helper_named(args.get(1..).unwrap_or_default())?;
    let cli = match HelperCli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("Error: {}", e.to_string().lines().next().unwrap_or_default());
            return Some(125);
        }
    };
    crate::log::set_level(cli.global.log_level);
    let result = match cli.command {
        Helper::Monitor(args) => monitor::monitor(args, &cli.global),
        Helper::Netstack(args) => netstack::netstack(args),
    };
    Some(result.unwrap_or_else(|e| {
        eprintln!("Error: {}", crate::exit::message(&e));
        e.downcast_ref::<crate::exit::ExitError>().map_or(125, |x| x.code)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(args: &[&str]) -> Option<String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        helper_named(&args).map(str::to_string)
    }

    #[test]
    fn finds_the_helper_after_global_options_only() {
        assert_eq!(named(&["__monitor", "ID"]).as_deref(), Some("__monitor"));
        assert_eq!(
            named(&[
                "--root",
                "/r",
                "--runroot=/rr",
                "__monitor",
                "--ready-on-stdout",
                "ID"
            ])
            .as_deref(),
            Some("__monitor")
        );
        assert_eq!(
            named(&["__netstack", "--tap-fd", "3"]).as_deref(),
            Some("__netstack")
        );
        // A container's command is not a helper mode.
        assert_eq!(named(&["run", "img", "__monitor"]), None);
        assert_eq!(named(&["--root", "__monitor"]), None);
        assert_eq!(named(&[]), None);
    }

    #[test]
    fn parses_what_the_full_command_line_parses() {
        let cli = HelperCli::try_parse_from([
            "burrow",
            "--runroot",
            "/rr",
            "__monitor",
            "--ready-on-stdout",
            "ID",
        ])
        .unwrap();
        assert_eq!(cli.global.runroot.as_deref(), Some(std::path::Path::new("/rr")));
        assert!(matches!(cli.command, Helper::Monitor(_)));
    }
}
