//! One file per command; each parses its flags and calls the engine crates.

pub mod attach;
mod autoupdate;
mod changes;
mod commit;
pub mod container;
mod cp;
pub mod create;
mod ctrinspect;
mod ctrutil;
mod diff;
mod events;
mod exec;
mod export;
mod generate;
mod healthcheck;
pub mod helper_modes;
mod history;
mod image;
mod images;
mod imageutil;
mod import;
mod info;
mod inspect;
mod links;
mod load;
mod login;
mod logs;
mod monitor;
mod mount;
pub mod netstack;
mod pause;
mod port;
mod procs;
mod ps;
pub mod pull;
mod push;
mod rename;
mod restart;
mod rm;
mod rmi;
pub mod run;
mod save;
pub mod sdcmd;
mod search;
pub mod start;
mod stats;
pub mod stop;
mod system;
mod system_clean;
mod system_df;
mod tag;
mod top;
mod treetar;
mod unshare;
mod version;
mod wait;

pub mod mounts;
pub mod network;
mod volume;

use crate::GlobalOptions;

// The `--format` engine (cli/src/format.rs), declared here so that main.rs need not change.
#[path = "../format.rs"]
pub mod format;

// Deferred: each command's flags are built only when it is the one run (the whole tree costs
// about 1 ms of every command's start). clap builds a nested command group (`container`,
// `image`, ...) at once, with its own variants' flags unless its enum is deferred as well:
// each of them is.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Run a command in a new container
    Run(Box<run::RunArgs>),
    /// Create but do not start a container
    Create(Box<create::CreateArgs>),
    /// Start one or more containers
    Start(start::StartArgs),
    /// List containers
    #[command(visible_alias = "list")]
    Ps(ps::PsArgs),
    /// Stop one or more containers
    Stop(stop::StopArgs),
    /// Restart one or more containers
    Restart(restart::RestartArgs),
    /// Kill one or more running containers with a specific signal
    Kill(stop::KillArgs),
    /// Remove one or more containers
    Rm(rm::RmArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Block on one or more containers
    Wait(wait::WaitArgs),
    /// Run a process in a running container
    Exec(exec::ExecArgs),
    /// Attach to a running container
    Attach(attach::AttachArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Rename an existing container
    Rename(rename::RenameArgs),
    /// Display the running processes of a container
    Top(top::TopArgs),
    /// Inspect changes to the container's file systems
    Diff(diff::DiffArgs),
    /// Create new image based on the changed container
    Commit(commit::CommitArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Show burrow events
    Events(events::EventsArgs),
    /// Display a live stream of container resource usage statistics
    ///
    /// Without a delegated cgroup the figures come from /proc of the container's processes
    /// (resident memory, CPU time averaged since start), not cgroup accounting; a warning says so.
    Stats(stats::StatsArgs),
    /// List port mappings or a specific mapping for the container
    Port(port::PortArgs),
    /// Mount a working container's root filesystem
    Mount(mount::MountArgs),
    /// Unmount working container's root filesystem
    #[command(visible_alias = "unmount")]
    Umount(mount::UmountArgs),
    /// Pause all the processes in one or more containers
    ///
    /// With no cgroup delegated to the user (cgroup v1, or no systemd delegation) there is no
    /// freezer: burrow stops every process in the container's pid namespace with SIGSTOP, and
    /// the container shows as paused.
    Pause(pause::PauseArgs),
    /// Unpause the processes in one or more containers
    ///
    /// Continues the processes `pause` stopped (SIGCONT).
    Unpause(pause::PauseArgs),
    /// Export a container's filesystem contents as a tar archive
    Export(export::ExportArgs),
    /// A detached container's monitor (internal)
    #[command(name = "__monitor", hide = true)]
    Monitor(monitor::MonitorArgs),
    /// Show history of a specified image
    History(history::HistoryArgs),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// List images in local storage
    Images(images::ImagesArgs),
    /// Import a tarball to create a filesystem image
    Import(import::ImportArgs),
    /// Display the configuration of a container or image
    Inspect(inspect::InspectArgs),
    /// Load image(s) from a tar archive
    Load(load::LoadArgs),
    /// Remove one or more images from local storage
    Rmi(rmi::RmiArgs),
    /// Save image(s) to an archive
    Save(save::SaveArgs),
    /// Add an additional name to a local image
    Tag(tag::TagArgs),
    /// Remove a name from a local image
    Untag(tag::UntagArgs),
    /// Run a command in a modified user namespace
    Unshare(unshare::UnshareArgs),
    /// Manage burrow
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Display the burrow version information
    Version(version::VersionArgs),
    /// Display burrow system information
    Info(info::InfoArgs),
    /// The userspace network stack of a container (internal)
    #[command(name = "__netstack", hide = true)]
    Netstack(netstack::NetstackArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// A user network's namespace holder (internal)
    #[command(name = "__network-holder", hide = true)]
    NetworkHolder(network::HolderArgs),
    /// Generate structured data based on containers
    #[command(subcommand)]
    Generate(generate::GenerateCommand),
    /// Auto update containers according to their auto-update policy
    AutoUpdate(autoupdate::AutoUpdateArgs),
    /// Manage health checks on containers
    #[command(subcommand)]
    Healthcheck(healthcheck::HealthcheckCommand),
    /// Quadlet files as systemd units: install burrow's generator for your user
    #[command(subcommand)]
    Systemd(sdcmd::SystemdCommand),
    /// Pull an image from a registry
    Pull(pull::PullArgs),
    /// Push an image to a specified destination
    Push(push::PushArgs),
    /// Log in to a container registry
    Login(login::LoginArgs),
    /// Log out of a container registry
    Logout(login::LogoutArgs),
    /// Search registries for an image
    Search(search::SearchArgs),
}

/// Runs a command; returns the exit code.
pub fn dispatch(command: Command, global: &GlobalOptions) -> anyhow::Result<i32> {
    match command {
        Command::Run(args) => run::run(*args, global),
        Command::Create(args) => create::create(*args, global),
        Command::Start(args) => start::start(args, global),
        Command::Ps(args) => ps::ps(args, global),
        Command::Stop(args) => stop::stop(args, global),
        Command::Restart(args) => restart::restart(args, global),
        Command::Kill(args) => stop::kill(args, global),
        Command::Rm(args) => rm::rm(args, global),
        Command::Logs(args) => logs::logs(args, global),
        Command::Wait(args) => wait::wait(args, global),
        Command::Exec(args) => exec::exec(args, global),
        Command::Attach(args) => attach::attach(args, global),
        Command::Container(cmd) => container::container(cmd, global),
        Command::Rename(args) => rename::rename(args, global),
        Command::Top(args) => top::top(args, global),
        Command::Diff(args) => diff::diff(args, global),
        Command::Commit(args) => commit::commit(args, global),
        Command::Cp(args) => cp::cp(args, global),
        Command::Events(args) => events::events(args, global),
        Command::Stats(args) => stats::stats(args, global),
        Command::Port(args) => port::port(args, global),
        Command::Mount(args) => mount::mount(args, global),
        Command::Umount(args) => mount::umount(args, global),
        Command::Pause(args) => pause::pause(args, global),
        Command::Unpause(args) => pause::unpause(args, global),
        Command::Export(args) => export::export(args, global),
        Command::Monitor(args) => monitor::monitor(args, global),
        Command::History(args) => history::history(args, global),
        Command::Image(cmd) => image::image(cmd, global),
        Command::Images(args) => images::images(args, global),
        Command::Import(args) => import::import(args, global),
        Command::Inspect(args) => inspect::inspect(args, global, true),
        Command::Load(args) => load::load(args, global),
        Command::Rmi(args) => rmi::rmi(args, global),
        Command::Save(args) => save::save(args, global),
        Command::Tag(args) => tag::tag(args, global),
        Command::Untag(args) => tag::untag(args, global),
        Command::Unshare(args) => unshare::unshare(args, global),
        Command::System(cmd) => system::system(cmd, global),
        Command::Netstack(args) => netstack::netstack(args),
        Command::Volume(cmd) => volume::volume(cmd, global),
        Command::Network(cmd) => network::network(cmd, global),
        Command::NetworkHolder(args) => network::holder(args),
        Command::Version(args) => version::version(args),
        Command::Info(args) => info::info(args, global),
        Command::Generate(cmd) => generate::generate(cmd, global),
        Command::Systemd(cmd) => sdcmd::systemd(cmd, global),
        Command::Healthcheck(cmd) => healthcheck::healthcheck(cmd, global),
        Command::AutoUpdate(args) => autoupdate::auto_update(args, global),
        Command::Pull(args) => pull::pull_cmd(args, global),
        Command::Push(args) => push::push_cmd(args, global),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Search(args) => search::search(args),
    }
}

/// RFC 3339 UTC time in whole seconds, as image configs and `inspect` show it.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    burrow_storage::events::format_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
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
