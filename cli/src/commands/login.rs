//! `burrow login` and `burrow logout`: credentials in the auth file Podman and skopeo
//! read (`$XDG_RUNTIME_DIR/containers/auth.json`). Passwords are never echoed or printed.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Result};
use burrow_registry::auth::{self, Credentials};
use burrow_registry::conf::RegistriesConf;
use burrow_registry::{Client, ClientOptions};

use crate::exit::ExitError;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry to log in to (default: the first unqualified-search registry)
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
    /// Username for registry
    #[arg(short, long)]
    username: Option<String>,
    /// Password for registry
    #[arg(short, long)]
    password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    password_stdin: bool,
    /// Return the current login user for the registry
    #[arg(long = "get-login")]
    get_login: bool,
    /// Path of the authentication file
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
    /// Use certificates at the specified path to access the registry
    #[arg(long = "cert-dir", value_name = "PATH")]
    cert_dir: Option<PathBuf>,
    /// Require HTTPS and verify certificates when contacting registries
    #[arg(long = "tls-verify", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tls_verify: Option<bool>,
    /// Write more detailed information to stdout
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry to log out of (default: the first unqualified-search registry)
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
    /// Remove the cached credentials for all registries in the auth file
    #[arg(short, long)]
    all: bool,
    /// Path of the authentication file
    #[arg(long, value_name = "PATH")]
    authfile: Option<PathBuf>,
}

/// The auth file key for a `REGISTRY[/REPO]` argument.
fn key_of(arg: Option<&str>) -> Result<String> {
    match arg {
        Some(r) => {
            let r = r
                .trim_start_matches("docker://")
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            if r.is_empty() || r.contains(['@', ' ']) {
                bail!("invalid registry {r:?}");
            }
            Ok(r.to_string())
        }
        None => {
            let conf = RegistriesConf::load()?;
            Ok(conf.search.first().cloned().unwrap_or_else(|| "docker.io".into()))
        }
    }
}

fn prompt(label: &str) -> Result<String> {
    eprint!("{label}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a password from the terminal without echo.
fn prompt_password() -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let result = prompt("Password");
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    result
}

fn fail(msg: String) -> anyhow::Error {
    ExitError {
        code: 125,
        message: msg,
    }
    .into()
}

pub fn login(args: LoginArgs) -> Result<i32> {
    let key = key_of(args.registry.as_deref())?;
    let registry = key.split('/').next().unwrap_or(&key).to_string();
    let authfile = args.authfile.as_deref();
    if args.get_login {
        return match auth::lookup(&key, authfile)? {
            Some(c) => {
                println!("{}", c.username);
                Ok(0)
            }
            None => Err(fail(format!("not logged into {key}"))),
        };
    }
    if args.password.is_some() && args.password_stdin {
        bail!("--password and --password-stdin are mutually exclusive");
    }
    let insecure = args.tls_verify.map(|v| !v).unwrap_or_else(|| {
        RegistriesConf::load()
            .map(|c| c.insecure(&registry))
            .unwrap_or(false)
    });
    let mut opts = ClientOptions {
        tls_verify: args.tls_verify,
        cert_dir: args.cert_dir.clone(),
        creds: None,
        authfile: args.authfile.clone(),
    };
    // Already logged in: check the stored credentials first, as Podman does.
    if args.username.is_none() && args.password.is_none() && !args.password_stdin {
        if let Some(existing) = auth::lookup(&key, authfile)? {
            opts.creds = Some(existing);
            println!("Authenticating with existing credentials for {key}");
            if Client::connect(&registry, insecure, &opts, &key)
                .and_then(|c| c.check_login())
                .is_ok()
            {
                println!("Existing credentials are valid. Already logged in to {key}");
                return Ok(0);
            }
            println!("Existing credentials are invalid, please enter valid username and password");
        }
    }
    let interactive = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if interactive => prompt("Username")?,
        None => bail!("cannot prompt for a username without a terminal: use --username"),
    };
    if username.is_empty() {
        bail!("username can't be empty");
    }
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) if interactive => prompt_password()?,
        (None, false) => bail!("cannot prompt for a password without a terminal: use --password-stdin"),
    };
    if password.is_empty() {
        bail!("password can't be empty");
    }
    opts.creds = Some(Credentials { username, password });
    let client = Client::connect(&registry, insecure, &opts, &key)?;
    client.check_login().map_err(|e| match e {
        burrow_registry::RegistryError::BadCredentials(_) => {
            fail(format!("logging into {key:?}: invalid username/password"))
        }
        e => fail(format!("logging into {key:?}: {e}")),
    })?;
    let path = auth::store(&key, opts.creds.as_ref().expect("set above"), authfile)?;
    if args.verbose {
        println!("Used: {}", path.display());
    }
    println!("Login Succeeded!");
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> Result<i32> {
    let authfile = args.authfile.as_deref();
    if args.all {
        if args.registry.is_some() {
            bail!("--all takes no registry");
        }
        auth::remove(None, authfile)?;
        println!("Removed login credentials for all registries");
        return Ok(0);
    }
    let key = key_of(args.registry.as_deref())?;
    if auth::remove(Some(&key), authfile)? {
        println!("Removed login credentials for {key}");
        Ok(0)
    } else {
        Err(fail(format!("not logged into {key}")))
    }
}
