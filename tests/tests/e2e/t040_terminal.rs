//! Terminals and standard input: `-t` with a real pty, `-i` pipes.

use std::time::Duration;

use burrow_tests::TestEnv;

#[test]
fn tty_gives_the_container_its_own_terminal() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let out = env.run_in_pty(
        &["run", "--rm", "-it", "bb", "sh", "-c", "tty; echo TERM=$TERM"],
        b"",
        Duration::from_secs(60),
    );
    out.success();
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");
    assert!(out.stdout.contains("TERM=xterm"), "{out}");
}

#[test]
fn tty_carries_input_and_ctrl_c() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let out = env.run_in_pty(
        &[
            "run",
            "--rm",
            "-it",
            "bb",
            "sh",
            "-c",
            "read line; echo got:$line",
        ],
        b"hello\n",
        Duration::from_secs(60),
    );
    out.success();
    assert!(out.stdout.contains("got:hello"), "{out}");
    // Ctrl-C reaches the container's foreground process through its terminal, typed once the
    // container runs. (With --init: the kernel ignores SIGINT to a namespace's PID 1 that has
    // no handler, and `sleep` has none; Docker and Podman behave the same.)
    let bin = burrow_tests::burrow_bin();
    let mut cmd = burrow_tests::pty_command(
        bin.to_str().unwrap(),
        &[
            "run",
            "--rm",
            "--init",
            "-it",
            "bb",
            "sh",
            "-c",
            "echo ready; exec sleep 300",
        ],
    );
    cmd.env_clear().envs(env.envs()).current_dir(env.home());
    let int = burrow_tests::run_bounded_steps(cmd, &[("ready", b"\x03")], Duration::from_secs(60)).unwrap();
    assert_eq!(int.code, 130, "{int}");
}

#[test]
fn interactive_without_tty_pipes_stdin() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let out = env.run_with_stdin(
        &[
            "run",
            "--rm",
            "-i",
            "bb",
            "sh",
            "-c",
            "tr a-z A-Z; test -t 0 || echo not-a-tty",
        ],
        b"shout\n",
    );
    out.success();
    assert_eq!(out.stdout_trimmed(), "SHOUT\nnot-a-tty", "{out}");
    // Without -i the container reads nothing.
    let closed = env.run_with_stdin(&["run", "--rm", "bb", "cat"], b"ignored\n");
    assert_eq!(closed.success().stdout_trimmed(), "", "{closed}");
}
