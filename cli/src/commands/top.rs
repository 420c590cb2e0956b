//! `burrow top`: the processes of a running container, with ps-style descriptors read from
//! `/proc` (as Podman's psgo), or, for anything else, `ps` run inside the container with the
//! given arguments (as Podman does).

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::format::{self, Format};
use super::procs::{self, ProcInfo};
use super::{ctrutil, exec};
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// CONTAINER [FORMAT-DESCRIPTORS|ARGS...]
    #[arg(
        required_unless_present = "latest",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CONTAINER"
    )]
    args: Vec<String>,
}

/// psgo's descriptors: (name, header).
const DESCRIPTORS: &[(&str, &str)] = &[
    ("args", "COMMAND"),
    ("comm", "COMMAND"),
    ("etime", "ELAPSED"),
    ("group", "GROUP"),
    ("hgroup", "HGROUP"),
    ("hpid", "HPID"),
    ("huser", "HUSER"),
    ("nice", "NI"),
    ("pcpu", "%CPU"),
    ("pgid", "PGID"),
    ("pid", "PID"),
    ("ppid", "PPID"),
    ("rgroup", "RGROUP"),
    ("rss", "RSS"),
    ("ruser", "RUSER"),
    ("seccomp", "SECCOMP"),
    ("state", "STATE"),
    ("time", "TIME"),
    ("tty", "TTY"),
    ("user", "USER"),
    ("vsz", "VSZ"),
];

const DEFAULT: &[&str] = &["user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"];

/// Name of `id` in a passwd or group file, else the number.
fn name_of(file: &str, id: u32) -> String {
    file.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(id)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| id.to_string())
}

struct Context {
    passwd: String,
    group: String,
    host_uid_map: Vec<burrow_userns::idmap::IdMapping>,
    host_gid_map: Vec<burrow_userns::idmap::IdMapping>,
    ticks: f64,
    uptime: f64,
    page_kib: u64,
}

fn host_id(map: &[burrow_userns::idmap::IdMapping], id: u32) -> u32 {
    map.iter()
        .find(|m| id >= m.inside && id - m.inside < m.count)
        .map_or(id, |m| m.outside + (id - m.inside))
}

fn value(d: &str, p: &ProcInfo, cx: &Context) -> String {
    let elapsed = (cx.uptime - p.start_ticks as f64 / cx.ticks).max(0.0);
    let cpu = p.cpu_ticks as f64 / cx.ticks;
    match d {
        "args" if !p.args.is_empty() => p.args.join(" "),
        "args" | "comm" => p.comm.clone(),
        "etime" => procs::go_duration(elapsed),
        "group" => name_of(&cx.group, p.gid),
        "hgroup" => host_id(&cx.host_gid_map, p.host_gid).to_string(),
        "hpid" => p.host_pid.to_string(),
        "huser" => host_id(&cx.host_uid_map, p.host_uid).to_string(),
        "nice" => p.nice.to_string(),
        "pcpu" => format!("{:.3}", if elapsed > 0.0 { cpu / elapsed * 100.0 } else { 0.0 }),
        "pgid" => p.pgid.to_string(),
        "pid" => p.pid.to_string(),
        "ppid" => p.ppid.to_string(),
        "rgroup" => name_of(&cx.group, p.rgid),
        "rss" => (p.rss_pages * cx.page_kib).to_string(),
        "ruser" => name_of(&cx.passwd, p.ruid),
        "seccomp" => ["disabled", "strict", "filter"]
            .get(p.seccomp as usize)
            .unwrap_or(&"?")
            .to_string(),
        "state" => p.state.clone(),
        "time" => procs::go_duration(cpu),
        "tty" => procs::tty_name(p.tty_nr),
        "user" => name_of(&cx.passwd, p.uid),
        "vsz" => (p.vsize / 1024).to_string(),
        _ => String::new(),
    }
}

pub fn top(args: TopArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let (name, rest) = if args.latest {
        let c = store
            .containers()?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no containers"))?;
        (c.id, args.args.clone())
    } else {
        (args.args[0].clone(), args.args[1..].to_vec())
    };
    let (record, launch, pid) = ctrutil::running_or_paused(store, &name, "top")?;
    // Descriptors come as separate arguments or comma-separated.
    let wanted: Vec<String> = rest
        .iter()
        .flat_map(|a| a.split(',').filter(|d| !d.is_empty()).map(str::to_string))
        .collect();
    let descriptors: Vec<String> = if wanted.is_empty() {
        DEFAULT.iter().map(|d| d.to_string()).collect()
    } else {
        wanted
    };
    if descriptors
        .iter()
        .any(|d| !DESCRIPTORS.iter().any(|(n, _)| n == d))
    {
        // Not psgo's: ps(1) arguments, for ps inside the container.
        let mut proc = launch.spec.process().clone().unwrap_or_default();
        proc.set_args(Some(std::iter::once("ps".to_string()).chain(rest).collect()));
        proc.set_terminal(Some(false));
        return exec::run_process(
            store,
            &record,
            &launch,
            pid,
            &proc,
            &exec::Session {
                interactive: false,
                preserve_fds: 0,
                detach: false,
            },
        );
    }
    let (uid_map, gid_map) = procs::nested_maps(&launch.spec);
    let read = |p: &str| {
        ctrutil::read_container_file(pid, p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let cx = Context {
        passwd: read("/etc/passwd"),
        group: read("/etc/group"),
        host_uid_map: engine.userns.uid_map.clone(),
        host_gid_map: engine.userns.gid_map.clone(),
        ticks: procs::clock_ticks() as f64,
        uptime: procs::uptime(),
        // SAFETY: sysconf has no preconditions.
        page_kib: (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64) / 1024,
    };
    let list = procs::list(pid, &uid_map, &gid_map);
    let mut template = String::from("table ");
    let mut headers = Vec::new();
    let keys: Vec<String> = (0..descriptors.len()).map(|i| format!("c{i}")).collect();
    for (i, d) in descriptors.iter().enumerate() {
        if i > 0 {
            template.push('\t');
        }
        template.push_str(&format!("{{{{.{}}}}}", keys[i]));
        let header = DESCRIPTORS.iter().find(|(n, _)| n == d).map_or("", |(_, h)| h);
        headers.push((keys[i].as_str(), header));
    }
    let rows: Vec<Value> = list
        .iter()
        .map(|p| {
            let mut row = Map::new();
            for (i, d) in descriptors.iter().enumerate() {
                row.insert(keys[i].clone(), json!(value(d, p, &cx)));
            }
            Value::Object(row)
        })
        .collect();
    let format = Format::Template(format::Template::parse(&template)?);
    format::print(&format, &rows, &headers)?;
    Ok(0)
}
