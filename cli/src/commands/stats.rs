//! `burrow stats`: what can be measured of a container without a delegated cgroup. Podman
//! reads cgroup accounting and, rootless on cgroup v1 as here, refuses; burrow sums what
//! `/proc` shows of the container's processes instead, and says so: memory is their
//! resident size (no page cache), CPU their time (average since start), block I/O that of
//! processes still running, network the counters of the container's interfaces.

use std::time::Duration;

use anyhow::Result;
use burrow_storage::ContainerState;
use serde::Serialize;
use serde_json::{json, Value};

use super::format::{self, Format};
use super::procs;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default: the running ones)
    #[arg(short = 'a', long)]
    all: bool,
    /// Pretty-print container statistics to JSON or using a Go template
    #[arg(long)]
    format: Option<String>,
    /// Time in seconds between stats reports
    #[arg(short = 'i', long, default_value_t = 5)]
    interval: u64,
    /// Act on the latest container burrow is aware of
    #[arg(short = 'l', long)]
    latest: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Containers (names or ids)
    containers: Vec<String>,
}

#[derive(Serialize)]
struct Stat {
    id: String,
    name: String,
    cpu_time: String,
    cpu_percent: String,
    avg_cpu: String,
    mem_usage: String,
    mem_percent: String,
    net_io: String,
    block_io: String,
    pids: String,
}

/// go-units `HumanSize`: decimal units, four significant digits, no space (`1.392MB`).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{}", UNITS[i])
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Received and sent bytes of the network namespace of `pid`, loopback left out.
fn net_io(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            if name.trim() == "lo" {
                return None;
            }
            let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            Some((*f.first()?, *f.get(8)?))
        })
        .fold((0, 0), |(r, t), (a, b)| (r + a, t + b))
}

fn sample(engine: &Engine, args: &StatsArgs) -> Result<Vec<Stat>> {
    let store = &engine.store;
    let mut list = Vec::new();
    let mut all = store.containers()?;
    for c in &mut all {
        store.refresh_state(c)?;
    }
    let wanted: Vec<_> = if !args.containers.is_empty() {
        let mut v = Vec::new();
        for name in &args.containers {
            let c = store.container(name)?;
            v.push(all.iter().find(|x| x.id == c.id).cloned().unwrap_or(c));
        }
        v
    } else if args.latest {
        all.last().cloned().into_iter().collect()
    } else {
        all.into_iter()
            .filter(|c| args.all || c.state == ContainerState::Running)
            .collect()
    };
    let ticks = procs::clock_ticks() as f64;
    let uptime = procs::uptime();
    let total = mem_total();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    for c in wanted {
        let id = if args.no_trunc {
            c.id.clone()
        } else {
            c.id[..12].to_string()
        };
        let (procs_list, net) = match (c.state, c.pid) {
            (ContainerState::Running, Some(pid)) => {
                let launch = crate::launch::load(store, &c)?;
                let (u, g) = procs::nested_maps(&launch.spec);
                (procs::list(pid, &u, &g), net_io(pid))
            }
            _ => (Vec::new(), (0, 0)),
        };
        let cpu: f64 = procs_list.iter().map(|p| p.cpu_ticks as f64).sum::<f64>() / ticks;
        let started = procs_list
            .iter()
            .find(|p| p.pid == 1)
            .map_or(uptime, |p| p.start_ticks as f64 / ticks);
        let elapsed = (uptime - started).max(0.0);
        let percent = if elapsed > 0.0 { cpu / elapsed * 100.0 } else { 0.0 };
        let rss: u64 = procs_list.iter().map(|p| p.rss_pages * page).sum();
        let (read, written) = procs_list
            .iter()
            .fold((0, 0), |(r, w), p| (r + p.read_bytes, w + p.write_bytes));
        list.push(Stat {
            id,
            name: c.name.clone(),
            cpu_time: procs::go_duration(cpu),
            cpu_percent: format!("{percent:.2}%"),
            avg_cpu: format!("{percent:.2}%"),
            mem_usage: format!("{} / {}", human(rss), human(total)),
            mem_percent: format!(
                "{:.2}%",
                if total > 0 {
                    rss as f64 / total as f64 * 100.0
                } else {
                    0.0
                }
            ),
            net_io: format!("{} / {}", human(net.0), human(net.1)),
            block_io: format!("{} / {}", human(read), human(written)),
            pids: procs_list.iter().map(|p| p.threads).sum::<u64>().to_string(),
        });
    }
    Ok(list)
}

fn row(s: &Stat) -> Value {
    json!({
        "ID": s.id, "Name": s.name, "CPUPerc": s.cpu_percent, "MemUsage": s.mem_usage,
        "MemPerc": s.mem_percent, "NetIO": s.net_io, "BlockIO": s.block_io, "PIDs": s.pids,
        "CPU": s.cpu_time, "AVGCPU": s.avg_cpu,
    })
}

const HEADERS: &[(&str, &str)] = &[
    ("ID", "ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET IO"),
    ("BlockIO", "BLOCK IO"),
    ("PIDs", "PIDS"),
    ("CPU", "CPU TIME"),
    ("AVGCPU", "AVG CPU %"),
];

pub fn stats(args: StatsArgs, global: &GlobalOptions) -> Result<i32> {
    let format = Format::parse(args.format.as_deref().unwrap_or(
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}\t{{.CPU}}\t{{.AVGCPU}}",
    ))?;
    let engine = Engine::open(global)?;
    eprintln!(
        "WARN: no cgroup is delegated to your user (cgroup v1, or no systemd delegation): figures are summed \
         from /proc of each container's processes (memory: resident size; CPU: time, averaged since start; \
         block I/O: processes still running), not cgroup accounting"
    );
    loop {
        let list = sample(&engine, &args)?;
        match &format {
            Format::Json => println!("{}", format::json_pretty(&list)),
            f => format::print(f, &list.iter().map(row).collect::<Vec<_>>(), HEADERS)?,
        }
        if args.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_as_go_units() {
        assert_eq!(super::human(0), "0B");
        assert_eq!(super::human(1_392_640), "1.393MB");
        assert_eq!(super::human(8_300_000_000), "8.3GB");
        assert_eq!(super::human(123_456), "123.5kB");
    }
}
