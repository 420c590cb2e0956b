//! `alias docker=burrow`: the Docker spellings of the commands burrow has.

use burrow_tests::TestEnv;

#[test]
fn docker_spellings_work() {
    let env = TestEnv::new();
    env.import_busybox("bb");
    let id = env
        .run(&["run", "-d", "--name", "web", "bb", "sleep", "300"])
        .success()
        .stdout_trimmed()
        .to_string();
    env.run(&["create", "--name", "idle", "bb", "true"]).success();
    // docker ps --format '{{.Names}}' and docker container ls.
    assert_eq!(
        env.run(&["ps", "--format", "{{.Names}}"]).success().stdout,
        "web\n"
    );
    assert_eq!(
        env.run(&["container", "ls", "-a", "--format", "{{.Names}}"])
            .success()
            .stdout,
        "idle\nweb\n"
    );
    let table = env.run(&["ps", "--format", "table {{.Names}}\t{{.Status}}"]);
    let first: Vec<&str> = table
        .success()
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(first, ["NAMES", "STATUS"]);
    assert!(env
        .run(&["container", "ls", "-q"])
        .success()
        .stdout
        .starts_with(&id[..12]));
    // docker inspect -f, docker container inspect, docker exec, docker top, docker image ls.
    assert_eq!(
        env.run(&["inspect", "-f", "{{.State.Status}}", "web"])
            .success()
            .stdout_trimmed(),
        "running"
    );
    assert_eq!(
        env.run(&["container", "inspect", "-f", "{{.Id}}", "web"])
            .success()
            .stdout_trimmed(),
        id
    );
    assert_eq!(env.run(&["exec", "web", "echo", "hi"]).success().stdout, "hi\n");
    env.run(&["top", "web"]).success();
    assert!(env
        .run(&["image", "ls"])
        .success()
        .stdout
        .contains("localhost/bb"));
    // docker stop / start / logs / rename / container prune -f / rm -f.
    env.run(&["container", "stop", "-t", "0", "web"]).success();
    env.run(&["container", "start", "web"]).success();
    env.run(&["rename", "web", "web2"]).success();
    let pruned = env.run(&["container", "prune", "-f"]);
    assert_eq!(pruned.success().stdout.lines().count(), 1, "{pruned}");
    env.run(&["rm", "-f", "web2"]).success();
    assert_eq!(env.run(&["ps", "-aq"]).success().stdout, "");
}
