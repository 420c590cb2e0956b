//! One file per command; each parses its flags and calls the engine crates.

mod import;
mod run;
mod system;
mod unshare;

use crate::GlobalOptions;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a command in a new container
    Run(Box<run::RunArgs>),
    /// Import a tarball to create a filesystem image
    Import(import::ImportArgs),
    /// Run a command in a modified user namespace
    Unshare(unshare::UnshareArgs),
    /// Manage burrow
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Display the burrow version information
    Version,
}

/// Runs a command; returns the exit code.
pub fn dispatch(command: Command, global: &GlobalOptions) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => run::run(*args, global),
        Command::Import(args) => import::import(args, global),
        Command::Unshare(args) => unshare::unshare(args, global),
        Command::System(cmd) => system::system(cmd, global),
        Command::Version => {
            println!("Version:      {}", env!("CARGO_PKG_VERSION"));
            println!(
                "OS/Arch:      linux/{}",
                std::env::consts::ARCH
                    .replace("x86_64", "amd64")
                    .replace("aarch64", "arm64")
            );
            Ok(0)
        }
    }
}

/// RFC 3339 UTC time, as image configs and `inspect` show it.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(super::rfc3339(t), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
