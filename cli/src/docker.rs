//! burrow invoked as `docker` (argv[0], e.g. a symlink named docker): Docker's name in usage
//! messages, Docker's exit codes, and Docker's spelling of a few inspect fields. The Docker
//! spellings of commands and flags (`container ls`, `--net`, `--link`, `inspect -f`) work
//! under either name, so `alias docker=burrow` (where argv[0] stays burrow) gets them too.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::commands::container::ContainerCommand;
use crate::commands::Command;

static DOCKER: AtomicBool = AtomicBool::new(false);

/// Whether we run as `docker`; remembers the answer for [`active`].
pub fn detect() -> bool {
    let docker = std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n == "docker"))
        .unwrap_or(false);
    DOCKER.store(docker, Ordering::Relaxed);
    docker
}

/// Whether we run as `docker`.
pub fn active() -> bool {
    DOCKER.load(Ordering::Relaxed)
}

/// Whether the command's exit code is a container's (or, for `run`/`create`/`exec`, one of
/// 125/126/127, which Docker uses the same way): kept as it is under Docker's rules.
pub fn passes_container_code(command: &Command) -> bool {
    match command {
        Command::Run(_)
        | Command::Create(_)
        | Command::Exec(_)
        | Command::Wait(_)
        | Command::Attach(_)
        | Command::Version(_) => true,
        Command::Start(a) => a.attaches(),
        Command::Container(c) => match c {
            ContainerCommand::Run(_)
            | ContainerCommand::Create(_)
            | ContainerCommand::Exec(_)
            | ContainerCommand::Wait(_)
            | ContainerCommand::Attach(_) => true,
            ContainerCommand::Start(a) => a.attaches(),
            _ => false,
        },
        _ => false,
    }
}

/// Docker's exit code for burrow's `code`: the docker CLI ends every other failed command
/// with 1, where Podman uses 125 (burrow failed) or 2 (`rm` of a running container).
pub fn exit_code(code: i32, container_code: bool) -> i32 {
    if container_code || code == 0 {
        code
    } else {
        1
    }
}

/// A container's name as Docker's inspect shows it: with a leading slash.
pub fn inspect_name(name: &str) -> String {
    if active() {
        format!("/{name}")
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_ends_other_failures_with_1() {
        assert_eq!(super::exit_code(125, false), 1);
        assert_eq!(super::exit_code(2, false), 1);
        assert_eq!(super::exit_code(0, false), 0);
        assert_eq!(super::exit_code(127, true), 127);
        assert_eq!(super::exit_code(125, true), 125);
    }
}
