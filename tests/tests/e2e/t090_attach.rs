//! `attach` to a detached container through its monitor's attach socket, and detaching with
//! `--detach-keys` (default ctrl-p,ctrl-q).

use std::time::Duration;

use burrow_tests::TestEnv;

#[test]
fn attach_carries_the_terminal_and_detaches() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    env.run(&["run", "-dit", "--name", "a", "bb", "sh"]).success();
    let out = env.run_in_pty_steps(
        &["attach", "a"],
        &[("", b"echo attached-$((6*7))\r"), ("attached-42", b"\x10\x11")],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.contains("attached-42"), "{out}");
    // Detached, not stopped.
    let state = env.run(&["inspect", "--format", "{{.State.Status}}", "a"]);
    assert_eq!(state.success().stdout_trimmed(), "running");
    // Attached again, the shell's exit ends the attach with its code.
    let out = env.run_in_pty_steps(
        &["attach", "--detach-keys", "ctrl-a", "a"],
        &[("", b"exit 5\r")],
        Duration::from_secs(60),
    );
    assert_eq!(out.code, 5, "{out}");
}

#[test]
fn attach_streams_output_of_a_container_without_terminal() {
    use std::io::{BufRead, BufReader, Read};
    let env = TestEnv::new();
    env.import_busybox("bb");
    // Output until the test says stop: whenever attach connects, it sees some.
    let script = "while [ ! -e /tmp/stop ]; do echo out; sleep 0.1; done; echo err >&2; exit 4";
    let id = env
        .run(&["run", "-d", "--name", "o", "bb", "sh", "-c", script])
        .success()
        .stdout_trimmed()
        .to_string();
    // Listening by the time `run -d` returns, so that an `attach` right after it connects.
    let socket = env.runtime_dir().join(format!("burrow/containers/{id}/attach"));
    assert!(socket.exists(), "no attach socket when run -d returned");
    let mut attach = env
        .cmd(&["attach", "o"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(attach.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "out\n");
    env.run(&["exec", "o", "touch", "/tmp/stop"]).success();
    let mut stderr = String::new();
    attach.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let status = attach.wait().unwrap();
    assert_eq!(status.code(), Some(4), "attach ends with the container's code");
    assert_eq!(stderr, "err\n");
}
