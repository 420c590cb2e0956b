//! User-defined networks (`burrow network ...`, `run --network NAME`): the commands and their
//! errors, containers reaching each other by name, alias and address while keeping their own
//! way out (host loopback, published ports), `--internal`, and nothing left behind.
//! Traffic goes only to 127.0.0.1 on the host and to namespaces the tests make.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use burrow_tests::image_gen::{busybox_rootfs_entries, Layer};
use burrow_tests::TestEnv;

fn env_with_busybox() -> TestEnv {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env
}

/// Polls `done` every 50 ms until it holds, failing the test after `limit`.
fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A shell loop for a client container: `nc TARGET 80` until it answers (the server may not
/// listen yet), at most ~10 s.
fn fetch(target: &str) -> String {
    format!("for i in $(seq 100); do nc {target} 80 && exit 0; sleep 0.1; done; exit 1")
}

/// The address `container` has on `network`, from `network inspect`.
fn address_on(env: &TestEnv, network: &str, container: &str) -> String {
    let out = env.run(&["network", "inspect", network]);
    let v: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    let members = v[0]["containers"].as_object().unwrap();
    members
        .values()
        .find(|m| m["name"] == container)
        .and_then(|m| m["ip"].as_str())
        .unwrap_or_else(|| panic!("{container} not on {network}\n{out}"))
        .to_string()
}

#[test]
fn network_commands_and_errors_as_podman() {
    let env = env_with_busybox();
    let made = env.run(&["network", "create", "--label", "team=a", "t220a"]);
    assert_eq!(made.success().stdout_trimmed(), "t220a");
    env.run(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "--gateway",
        "10.77.0.254",
        "--internal",
        "t220b",
    ])
    .success();

    let dup = env.run(&["network", "create", "t220a"]);
    assert_eq!(dup.code, 125, "{dup}");
    assert!(
        dup.stderr
            .contains("Error: network name t220a already used: network already exists"),
        "{dup}"
    );
    assert_eq!(
        env.run(&["network", "create", "--ignore", "t220a"])
            .success()
            .stdout_trimmed(),
        "t220a"
    );
    for reserved in ["none", "host", "bridge", "slirp4netns"] {
        let r = env.run(&["network", "create", reserved]);
        assert_eq!(r.code, 125, "{r}");
        assert!(r.stderr.contains("conflicts with a valid network mode"), "{r}");
    }
    let overlap = env.run(&["network", "create", "--subnet", "10.77.0.0/16", "t220c"]);
    assert_eq!(overlap.code, 125, "{overlap}");
    assert!(overlap.stderr.contains("already used"), "{overlap}");

    let ls = env.run(&["network", "ls"]);
    let lines: Vec<&str> = ls.success().stdout.lines().collect();
    assert!(
        lines[0].starts_with("NETWORK ID") && lines[0].contains("NAME") && lines[0].contains("DRIVER"),
        "{ls}"
    );
    assert!(
        lines.iter().any(|l| l.contains("t220a") && l.contains("bridge")),
        "{ls}"
    );
    assert_eq!(
        env.run(&["network", "ls", "-q", "--filter", "label=team=a"])
            .success()
            .stdout,
        "t220a\n"
    );
    let ids = env.run(&["network", "ls", "--no-trunc", "--format", "{{.ID}}"]);
    assert!(ids.success().stdout.lines().all(|l| l.len() == 64), "{ids}");

    let inspect = env.run(&["network", "inspect", "t220b"]);
    let v: serde_json::Value = serde_json::from_str(&inspect.success().stdout).unwrap();
    assert_eq!(v[0]["name"], "t220b");
    assert_eq!(v[0]["driver"], "bridge");
    assert_eq!(v[0]["internal"], true);
    assert_eq!(v[0]["subnets"][0]["subnet"], "10.77.0.0/24");
    assert_eq!(v[0]["subnets"][0]["gateway"], "10.77.0.254");
    let a: serde_json::Value =
        serde_json::from_str(&env.run(&["network", "inspect", "t220a"]).success().stdout).unwrap();
    assert_eq!(
        a[0]["subnets"][0]["subnet"], "10.89.0.0/24",
        "the first free 10.89.N.0/24"
    );
    assert_eq!(a[0]["labels"]["team"], "a");

    assert_eq!(env.run(&["network", "exists", "t220a"]).code, 0);
    assert_eq!(env.run(&["network", "exists", "nope"]).code, 1);

    // An unknown network: one line, 125, and no container made.
    let nope = env.run(&["run", "--rm", "--network", "nope", "bb", "true"]);
    assert_eq!(nope.code, 125, "{nope}");
    assert_eq!(
        nope.stderr.trim(),
        "Error: unable to find network with name or ID nope: network not found"
    );
    assert_eq!(
        env.run(&["ps", "-a", "-q"]).success().stdout,
        "",
        "no container left"
    );

    // A network in use is not removed; -f removes its containers with it.
    env.run(&["create", "--name", "user1", "--network", "t220a", "bb", "true"])
        .success();
    let used = env.run(&["network", "rm", "t220a"]);
    assert_eq!(used.code, 2, "{used}");
    assert!(
        used.stderr.contains("\"t220a\" has associated containers with it. Use -f to forcibly delete containers and pods: network is being used"),
        "{used}"
    );
    // A taken static address is refused, naming it.
    let taken = env.run(&["create", "--network", "t220a", "--ip", "10.89.0.2", "bb", "true"]);
    assert_eq!(taken.code, 125, "{taken}");
    assert!(taken.stderr.contains("10.89.0.2 is already allocated"), "{taken}");
    let alias = env.run(&[
        "create",
        "--network",
        "t220a",
        "--network-alias",
        "a b",
        "bb",
        "true",
    ]);
    assert_eq!(alias.code, 125, "{alias}");
    assert!(alias.stderr.contains("invalid network alias \"a b\""), "{alias}");
    assert_eq!(
        env.run(&["network", "rm", "-f", "t220a"])
            .success()
            .stdout_trimmed(),
        "t220a"
    );
    assert_eq!(
        env.run(&["ps", "-a", "-q"]).success().stdout,
        "",
        "-f removed the container"
    );

    let pruned = env.run(&["network", "prune", "-f"]);
    assert_eq!(pruned.success().stdout, "t220b\n");
    assert_eq!(env.run(&["network", "ls", "-q"]).success().stdout, "");
    let gone = env.run(&["network", "rm", "t220b"]);
    assert_eq!(gone.code, 1, "{gone}");
    assert!(gone.stderr.contains("network not found"), "{gone}");
}

#[test]
fn containers_reach_each_other_by_name_alias_and_address() {
    let env = env_with_busybox();
    env.run(&["network", "create", "front"]).success();
    env.run(&["network", "create", "--internal", "other"]).success();
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let publish = format!("127.0.0.1:{port}:80");
    env.run(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "front",
        "--network-alias",
        "web",
        "-p",
        &publish,
        "bb",
        "sh",
        "-c",
        "while true; do echo hi-from-srv | nc -l -p 80; done",
    ])
    .success();
    let ip = address_on(&env, "front", "srv");
    assert_eq!(ip, "10.89.0.2", "the lowest free address");
    let fmt = "{{.HostConfig.NetworkMode}} {{.NetworkSettings.Networks.front.IPAddress}}";
    let inspect = env.run(&["inspect", "-f", fmt, "srv"]);
    assert_eq!(
        inspect.success().stdout_trimmed(),
        "bridge 10.89.0.2",
        "{inspect}"
    );

    for target in ["srv", "web", ip.as_str()] {
        let out = env.run(&[
            "run",
            "--rm",
            "--network",
            "front",
            "bb",
            "sh",
            "-c",
            &fetch(target),
        ]);
        assert_eq!(out.success().stdout, "hi-from-srv\n", "by {target}\n{out}");
    }
    // The client is listed in the server's hosts file too, once it started.
    env.run(&[
        "create",
        "--name",
        "late",
        "--network",
        "front",
        "bb",
        "sleep",
        "300",
    ])
    .success();
    env.run(&["start", "late"]).success();
    let hosts = env.run(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(hosts.success().stdout.contains("10.89.0.3\tlate"), "{hosts}");
    // The stack's DNS address answers for the members too, a later one included.
    let looked_up = env.run(&["exec", "srv", "nslookup", "late", "10.0.2.3"]);
    assert!(
        looked_up.success().stdout.contains("Address: 10.89.0.3"),
        "{looked_up}"
    );
    let looked_up = env.run(&["exec", "late", "nslookup", "web"]);
    assert!(
        looked_up.success().stdout.contains("Address: 10.89.0.2"),
        "{looked_up}"
    );
    let iface = env.run(&["exec", "late", "ip", "-4", "-o", "addr"]);
    assert!(
        iface.success().stdout.contains("eth0    inet 10.89.0.3/24"),
        "{iface}"
    );
    assert!(
        iface.stdout.contains("tap0    inet 10.0.2.100/24"),
        "its own stack stays\n{iface}"
    );

    // Another network: neither the name nor the address leads there.
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "other",
        "bb",
        "sh",
        "-c",
        &format!("nc -w 2 {ip} 80"),
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert!(!out.stdout.contains("hi-from-srv"), "{out}");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "other",
        "bb",
        "sh",
        "-c",
        "nc -w 2 srv 80",
    ]);
    assert_ne!(out.code, 0, "{out}");

    // The published port still reaches srv from the host.
    let mut reply = String::new();
    wait_for(Duration::from_secs(20), "the published port", || {
        reply.clear();
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read_to_string(&mut reply);
        }
        !reply.is_empty()
    });
    assert_eq!(reply, "hi-from-srv\n");
    // A removed member leaves its peers' hosts files.
    env.run(&["rm", "-f", "-t", "0", "late"]).success();
    let hosts = env.run(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(!hosts.success().stdout.contains("late"), "{hosts}");
    assert!(hosts.stdout.contains("10.89.0.2\tsrv web"), "{hosts}");
    // So does one that its monitor removes (`run -d --rm`, then stop) and a foreground `--rm` one.
    env.run(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "--network",
        "front",
        "bb",
        "sleep",
        "300",
    ])
    .success();
    let hosts = env.run(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(hosts.success().stdout.contains("\tbrief"), "{hosts}");
    env.run(&["stop", "-t", "0", "brief"]).success();
    wait_for(Duration::from_secs(20), "brief's removal", || {
        env.run(&["container", "exists", "brief"]).code == 1
    });
    env.run(&["run", "--rm", "--name", "fg", "--network", "front", "bb", "true"])
        .success();
    let hosts = env.run(&["exec", "srv", "cat", "/etc/hosts"]);
    assert!(!hosts.success().stdout.contains("brief"), "{hosts}");
    assert!(!hosts.stdout.contains("\tfg"), "{hosts}");
    env.run(&["rm", "-f", "-t", "0", "srv"]).success();
}

#[test]
fn network_members_keep_the_host_loopback_way_out() {
    let env = env_with_busybox();
    env.run(&["network", "create", "out"]).success();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in server.incoming().flatten().take(4) {
            let _ = s.write_all(b"hello-host\n");
        }
    });
    let cmd = format!("nc 10.0.2.2 {port}");
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "out:allow_host_loopback=true",
        "bb",
        "sh",
        "-c",
        &cmd,
    ]);
    assert_eq!(out.success().stdout, "hello-host\n", "{out}");
}

#[test]
fn internal_network_has_no_way_out_but_its_members() {
    let env = env_with_busybox();
    env.run(&["network", "create", "--internal", "inner"]).success();
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "inner",
        "bb",
        "sh",
        "-c",
        "ip route; ip -o link",
    ]);
    out.success();
    assert!(!out.stdout.contains("default"), "no default route\n{out}");
    assert!(!out.stdout.contains("tap0"), "no stack\n{out}");
    assert!(out.stdout.contains("10.89.0.0/24 dev eth0"), "{out}");
    env.run(&[
        "run",
        "-d",
        "--name",
        "isrv",
        "--network",
        "inner",
        "bb",
        "sh",
        "-c",
        "while true; do echo inner | nc -l -p 80; done",
    ])
    .success();
    let got = env.run(&[
        "run",
        "--rm",
        "--network",
        "inner",
        "bb",
        "sh",
        "-c",
        &fetch("isrv"),
    ]);
    assert_eq!(got.success().stdout, "inner\n", "{got}");
    let host = env.run(&[
        "run",
        "--rm",
        "--network",
        "inner",
        "bb",
        "sh",
        "-c",
        "nc -w 2 10.0.2.2 80",
    ]);
    assert_ne!(host.code, 0, "{host}");
    env.run(&["rm", "-f", "-t", "0", "isrv"]).success();
}

/// The veth ends on network `name`'s bridge, seen from inside its namespace.
fn veths(env: &TestEnv, holder: &str) -> usize {
    let ns = format!("--net=/proc/{holder}/ns/net");
    let out = env.run(&["unshare", "nsenter", &ns, "ip", "-o", "link"]);
    out.success()
        .stdout
        .lines()
        .filter(|l| l.contains("veth"))
        .count()
}

#[test]
fn holder_and_veths_go_with_the_last_container() {
    let env = env_with_busybox();
    env.run(&["network", "create", "gone"]).success();
    let pid_file = env.runtime_dir().join("burrow/networks/gone.pid");
    for name in ["g1", "g2"] {
        env.run(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "gone",
            "bb",
            "sleep",
            "300",
        ])
        .success();
    }
    let holder = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{holder}/comm"))
            .unwrap()
            .trim(),
        "burrow-net"
    );
    assert_eq!(veths(&env, &holder), 2);
    env.run(&["rm", "-f", "-t", "0", "g1"]).success();
    wait_for(Duration::from_secs(20), "g1's veth to go", || {
        veths(&env, &holder) == 1
    });
    env.run(&["rm", "-f", "-t", "0", "g2"]).success();
    wait_for(Duration::from_secs(20), "the holder to exit", || {
        !std::path::Path::new(&format!("/proc/{holder}")).exists()
    });
    assert!(!pid_file.exists(), "the holder removed its pid file");
    // The next container starts a new holder, and the network works again.
    let out = env.run(&[
        "run",
        "--rm",
        "--network",
        "gone",
        "bb",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.success().stdout.contains("inet 10.89.0."), "{out}");
}

/// Quadlet: a `.network` file and two `.container` files on it (`Network=NAME.network`),
/// as services of the real user manager: the client reaches the server by name.
#[test]
fn quadlet_network_joins_two_containers() {
    use crate::t400_systemd::{env_with_busybox, manager_runtime_dir, systemctl, unique, UnitFileGuard};
    let Some(env) = env_with_busybox() else { return };
    let name = unique("t220q", &env);
    let dir = env.config_dir().join("containers/systemd");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.network")),
        "[Network]\nSubnet=10.91.0.0/24\n",
    )
    .unwrap();
    let (srv, cli) = (format!("{name}srv"), format!("{name}cli"));
    std::fs::write(
        dir.join(format!("{srv}.container")),
        format!(
            "[Container]\nImage=bb\nContainerName={srv}\nNetwork={name}.network\n\
             Exec=sh -c \"while true; do echo quadlet-hi | nc -l -p 80; done\"\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{cli}.container")),
        format!(
            "[Container]\nImage=bb\nContainerName={cli}\nNetwork={name}.network\n\
             Exec=sh -c \"for i in $(seq 100); do nc {srv} 80 && break; sleep 0.1; done; sleep 300\"\n"
        ),
    )
    .unwrap();
    let unit_dir = manager_runtime_dir().join("systemd/user");
    let unit_dir_s = unit_dir.to_string_lossy().to_string();
    let mut guard = UnitFileGuard::new(&env);
    for (file, service) in [
        (format!("{cli}.service"), format!("{cli}.service")),
        (format!("{srv}.service"), format!("{srv}.service")),
        (
            format!("{name}-network.service"),
            format!("{name}-network.service"),
        ),
    ] {
        guard.adopt(unit_dir.join(file), Some(&service));
    }
    struct Uninstall<'a>(&'a TestEnv, String);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = self
                .0
                .run(&["systemd", "install-generator", "--unit-dir", &self.1, "--remove"]);
        }
    }
    let _uninstall = Uninstall(&env, unit_dir_s.clone());
    env.run(&["systemd", "install-generator", "--unit-dir", &unit_dir_s])
        .success();
    let unit = std::fs::read_to_string(unit_dir.join(format!("{cli}.service"))).unwrap();
    assert!(
        unit.contains(&format!("Requires={name}-network.service\n")),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("After={name}-network.service\n")),
        "{unit}"
    );
    systemctl(&env, &["daemon-reload"]).success();
    systemctl(
        &env,
        &["start", &format!("{srv}.service"), &format!("{cli}.service")],
    )
    .success();
    assert_eq!(
        env.run(&["network", "exists", &format!("systemd-{name}")]).code,
        0
    );
    let mut logs = String::new();
    wait_for(Duration::from_secs(30), "the client's answer", || {
        logs = env.run(&["logs", &cli]).stdout;
        logs.contains("quadlet-hi")
    });
    let ip = address_on(&env, &format!("systemd-{name}"), &srv);
    assert!(ip.starts_with("10.91.0."), "{ip}");
    // The network's holder runs in a unit of its own: stopping the unit that started it
    // leaves the other container connected.
    let pid_file = env
        .runtime_dir()
        .join(format!("burrow/networks/systemd-{name}.pid"));
    let holder = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
    let cgroup = std::fs::read_to_string(format!("/proc/{holder}/cgroup")).unwrap();
    assert!(cgroup.contains("burrow-network-"), "{cgroup}");
    systemctl(&env, &["stop", &format!("{srv}.service")]).success();
    assert!(
        std::path::Path::new(&format!("/proc/{holder}")).exists(),
        "the holder ended with srv"
    );
    let link = env.run(&["exec", &cli, "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(link.success().stdout.contains("10.91.0."), "{link}");
    systemctl(&env, &["stop", &format!("{cli}.service")]).success();
    wait_for(Duration::from_secs(20), "the holder to exit", || {
        !std::path::Path::new(&format!("/proc/{holder}")).exists()
    });
}

/// A user with no subordinate ids (a single-id namespace) gets user networks too.
#[test]
fn norange_user_network_works() {
    let env = TestEnv::new();
    // The busybox rootfs with every file owned by root: what a single-id namespace can hold.
    let entries = busybox_rootfs_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.owner(0, 0))
        .collect();
    let tar = env.home().join("single-id.tar");
    Layer::new(entries)
        .write_tar(std::fs::File::create(&tar).unwrap())
        .unwrap();
    env.run(&["import", tar.to_str().unwrap(), "bb"]).success();
    env.run(&["network", "create", "solo"]).success();
    env.run(&[
        "run",
        "-d",
        "--name",
        "nsrv",
        "--network",
        "solo",
        "bb",
        "sh",
        "-c",
        "while true; do echo solo-hi | nc -l -p 80; done",
    ])
    .success();
    let got = env.run(&[
        "run",
        "--rm",
        "--network",
        "solo",
        "bb",
        "sh",
        "-c",
        &fetch("nsrv"),
    ]);
    assert_eq!(got.success().stdout, "solo-hi\n", "{got}");
    env.run(&["rm", "-f", "-t", "0", "nsrv"]).success();
}

const SERVE: &str = "while true; do echo served | nc -l -p 80; done";

/// Containers started at once on a new network share one holder; a restarted container gets
/// its link back; `network connect` links a running container.
#[test]
fn parallel_starts_restart_and_connect() {
    let env = env_with_busybox();
    env.run(&["network", "create", "par"]).success();
    let names = ["p1", "p2", "p3", "p4"];
    std::thread::scope(|s| {
        for name in names {
            let env = &env;
            s.spawn(move || {
                env.run(&[
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--network",
                    "par",
                    "bb",
                    "sh",
                    "-c",
                    SERVE,
                ])
                .success();
            });
        }
    });
    let holder = std::fs::read_to_string(env.runtime_dir().join("burrow/networks/par.pid")).unwrap();
    let holder = holder.trim();
    assert_eq!(veths(&env, holder), 4, "one bridge for all four");
    let mut addresses: Vec<String> = names.iter().map(|n| address_on(&env, "par", n)).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 4, "{addresses:?}");

    env.run(&["restart", "-t", "0", "p1"]).success();
    let out = env.run(&["exec", "p2", "sh", "-c", &fetch("p1")]);
    assert_eq!(out.success().stdout, "served\n", "{out}");

    env.run(&["run", "-d", "--name", "alone", "bb", "sh", "-c", SERVE])
        .success();
    env.run(&["network", "connect", "--alias", "joined", "par", "alone"])
        .success();
    let out = env.run(&["exec", "p2", "sh", "-c", &fetch("joined")]);
    assert_eq!(out.success().stdout, "served\n", "{out}");
    let out = env.run(&["exec", "alone", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(out.success().stdout.contains("10.89.0."), "{out}");
    let again = env.run(&["network", "connect", "par", "alone"]);
    assert_eq!(again.code, 125, "{again}");
    env.run(&["rm", "-f", "-t", "0", "p1", "p2", "p3", "p4", "alone"])
        .success();
}
