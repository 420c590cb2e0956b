//! Pull and push against a real registry (Debian's docker-registry on 127.0.0.1, plain
//! HTTP): images skopeo pushed are pulled and run; pushed images come back bit for bit
//! through skopeo; short names and registries.conf; `run --pull`; manifest lists.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;

use burrow_tests::image_gen::oci::{oci_arch, sha256_digest};
use burrow_tests::image_gen::{busybox_rootfs_entries, sample_image, Compression, ImageSpec};
use burrow_tests::image_gen::{Entry, Layer};
use burrow_tests::registry::{skopeo, TestRegistry};
use burrow_tests::TestEnv;
use serde_json::Value;

/// Writes `spec` as an OCI archive and has skopeo push it to `dest` (`ADDR/NAME:TAG`).
fn skopeo_push(env: &TestEnv, spec: &ImageSpec, dest: &str) -> burrow_tests::image_gen::ImageDigests {
    let archive = env
        .home()
        .join(format!("{}.tar", hex(&sha256_digest(dest.as_bytes()))));
    let digests = spec.write_oci_archive(&archive).unwrap();
    let src = format!("oci-archive:{}", archive.display());
    skopeo(
        env,
        &[
            "copy",
            "--dest-tls-verify=false",
            &src,
            &format!("docker://{dest}"),
        ],
    )
    .success();
    digests
}

fn hex(d: &str) -> &str {
    d.trim_start_matches("sha256:")
}

fn inspect(env: &TestEnv, image: &str) -> Value {
    let out = env.run(&["image", "inspect", image]);
    serde_json::from_str::<Value>(&out.success().stdout).unwrap()[0].clone()
}

#[test]
fn t300_pulls_what_skopeo_pushed_and_runs_it() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    let name = format!("{}/sample:1", reg.addr());
    let digests = skopeo_push(&env, &sample_image().unwrap(), &name);

    // A plain-HTTP registry needs --tls-verify=false (or insecure = true): said so.
    let out = env.run(&["pull", &name]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("--tls-verify=false"), "{out}");

    let out = env.run(&["pull", "--tls-verify=false", &name]);
    assert_eq!(
        out.success().stdout,
        format!("{}\n", hex(&digests.config)),
        "{out}"
    );
    assert_eq!(out.stderr.matches("Copying blob").count(), 3, "{out}");
    let i = inspect(&env, &name);
    assert_eq!(i["RootFS"]["Layers"], serde_json::json!(digests.diff_ids));
    assert_eq!(&i["Digest"], digests.manifest.as_ref().unwrap());
    let out = env.run(&[
        "run",
        "--rm",
        &name,
        "sh",
        "-c",
        "cat /opt/keep; ls /opt/data; test -e /etc/motd || echo gone",
    ]);
    assert_eq!(out.success().stdout, "keep\nc\ngone\n", "{out}");

    // Again: nothing is fetched; -q is silent.
    let out = env.run(&["pull", "--tls-verify=false", &name]);
    assert_eq!(
        out.success().stderr.matches("skipped: already exists").count(),
        3,
        "{out}"
    );
    let out = env.run(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(
        (out.success().stdout.trim(), out.stderr.as_str()),
        (hex(&digests.config), ""),
        "{out}"
    );

    // Pushed to another repository of the same registry, the layers are mounted, not sent.
    let copy = format!("{}/copy/sample:2", reg.addr());
    let out = env.run(&["push", "--tls-verify=false", &name, &copy]);
    assert_eq!(
        out.success().stderr.matches("skipped: mounted").count(),
        3,
        "{out}"
    );

    // search lists the catalog; --list-tags the tags of one repository.
    let search = |term: &str| -> Vec<String> {
        let out = env.run(&["search", "--tls-verify=false", &format!("{}/{term}", reg.addr())]);
        let lines = out.success().stdout.lines().skip(1);
        lines.map(|l| l.trim().to_string()).collect()
    };
    let a = reg.addr();
    assert_eq!(search("sam"), [format!("{a}/copy/sample"), format!("{a}/sample")]);
    assert_eq!(search("cop"), [format!("{a}/copy/sample")]);
    let out = env.run(&[
        "search",
        "--tls-verify=false",
        "--list-tags",
        &format!("{}/copy/sample", reg.addr()),
    ]);
    let rows: Vec<Vec<&str>> = out
        .success()
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [vec![format!("{}/copy/sample", reg.addr()).as_str(), "2"]],
        "{out}"
    );

    // By digest, and every tag at once.
    let by_digest = format!("{}/sample@{}", reg.addr(), digests.manifest.as_ref().unwrap());
    let out = env.run(&["pull", "-q", "--tls-verify=false", &by_digest]);
    assert_eq!(out.success().stdout.trim(), hex(&digests.config), "{out}");
    skopeo(
        &env,
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{name}"),
            &format!("docker://{}/sample:2", reg.addr()),
        ],
    )
    .success();
    env.run(&["rmi", "-a", "-f"]).success();
    let out = env.run(&[
        "pull",
        "-q",
        "--all-tags",
        "--tls-verify=false",
        &format!("{}/sample", reg.addr()),
    ]);
    assert_eq!(
        out.success().stdout,
        format!("{0}\n{0}\n", hex(&digests.config)),
        "{out}"
    );
    let out = env.run(&["images", "--format", "{{.Tag}}"]);
    let mut tags: Vec<&str> = out.success().stdout.lines().collect();
    tags.sort();
    assert_eq!(tags, ["1", "2"], "{out}");

    // On a terminal: a bar per layer while it transfers, then one line per blob; plain
    // lines where TERM is unset (or dumb), as indicatif cannot draw there.
    for term in ["TERM=xterm", "-uTERM"] {
        env.run(&["rmi", "-a", "-f"]).success();
        let bin = burrow_tests::burrow_bin();
        let args = [term, bin.to_str().unwrap(), "pull", "--tls-verify=false", &name];
        let mut c = burrow_tests::pty_command("env", &args);
        c.env_clear().envs(env.envs()).current_dir(env.home());
        let out = burrow_tests::run_bounded(c, Some(b""), std::time::Duration::from_secs(120)).unwrap();
        assert_eq!(out.code, 0, "{out}");
        assert_eq!(
            out.stdout.contains("\x1b["),
            term == "TERM=xterm",
            "{term}: {out}"
        );
        assert_eq!(
            out.stdout.matches(" done").count(),
            4,
            "3 blobs and the config: {out}"
        );
    }

    // Unknown tags and repositories: exit 125, naming what is missing.
    let out = env.run(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/sample:nope", reg.addr()),
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("manifest unknown"), "{out}");
}

#[test]
fn t301_short_names_registries_conf_and_run_pull() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    let addr = reg.addr();
    let digests = skopeo_push(&env, &sample_image().unwrap(), &format!("{addr}/tools/sample:1"));
    let conf_dir = env.config_dir().join("containers");
    fs::create_dir_all(&conf_dir).unwrap();
    let conf = format!(
        "unqualified-search-registries = [\"{addr}\"]\n\n[aliases]\n\"nick\" = \"{addr}/tools/sample\"\n\n[[registry]]\nlocation = \"{addr}\"\ninsecure = true\n"
    );
    fs::write(conf_dir.join("registries.conf"), &conf).unwrap();

    // run pulls a missing image by its short name, from the search registry, insecure by config.
    let out = env.run(&["run", "--rm", "tools/sample:1", "cat", "/opt/keep"]);
    assert_eq!(out.success().stdout, "keep\n", "{out}");
    assert!(
        out.stderr
            .contains(&format!("Trying to pull {addr}/tools/sample:1")),
        "{out}"
    );
    let out = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(out.success().stdout, format!("{addr}/tools/sample:1\n"), "{out}");
    // Present: --pull=missing does not pull, --pull=always does.
    let out = env.run(&["run", "--rm", "tools/sample:1", "true"]);
    assert!(!out.success().stderr.contains("Trying to pull"), "{out}");
    let out = env.run(&["run", "--rm", "--pull=always", "tools/sample:1", "true"]);
    assert!(out.success().stderr.contains("Trying to pull"), "{out}");
    let out = env.run(&[
        "create",
        "--pull",
        "never",
        "-q",
        &format!("{addr}/tools/other:1"),
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("image not known"), "{out}");
    let out = env.run(&["run", "--pull=sometimes", "tools/sample:1", "true"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("invalid pull policy"), "{out}");

    // An alias.
    env.run(&["rmi", "-a"]).success();
    let out = env.run(&["pull", "-q", "nick:1"]);
    assert_eq!(
        out.success().stdout,
        format!("{}\n", hex(&digests.config)),
        "{out}"
    );

    // A blocked registry is refused.
    fs::write(
        conf_dir.join("registries.conf"),
        conf.replace("insecure = true", "blocked = true"),
    )
    .unwrap();
    let out = env.run(&["pull", "tools/sample:1"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("blocked"), "{out}");
}

#[test]
fn t302_pushes_and_skopeo_copies_back_bit_identically() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    env.import_busybox("bb");
    let id = inspect(&env, "bb")["Id"].as_str().unwrap().to_string();
    let dest = format!("{}/pushed/bb:1", reg.addr());
    let digestfile = env.home().join("digest");
    let out = env.run(&[
        "push",
        "--tls-verify=false",
        "--digestfile",
        digestfile.to_str().unwrap(),
        "bb",
        &dest,
    ]);
    out.success();
    let raw = skopeo(
        &env,
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{dest}"),
        ],
    );
    let raw = raw.success().stdout.clone();
    assert_eq!(
        fs::read_to_string(&digestfile).unwrap(),
        sha256_digest(raw.as_bytes())
    );
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // skopeo copies it out: the same manifest bytes, blobs matching their digests, the
    // config being the image's, each layer uncompressing to its diff_id.
    let dir = env.home().join("copy");
    skopeo(
        &env,
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("dir:{}", dir.display()),
        ],
    )
    .success();
    assert_eq!(fs::read_to_string(dir.join("manifest.json")).unwrap(), raw);
    let config = fs::read(dir.join(hex(manifest["config"]["digest"].as_str().unwrap()))).unwrap();
    assert_eq!(sha256_digest(&config), format!("sha256:{id}"));
    let diff_ids = serde_json::from_slice::<Value>(&config).unwrap()["rootfs"]["diff_ids"].clone();
    for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        let blob = fs::read(dir.join(hex(layer["digest"].as_str().unwrap()))).unwrap();
        assert_eq!(sha256_digest(&blob), layer["digest"].as_str().unwrap());
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(blob.as_slice())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(sha256_digest(&tar), diff_ids[i].as_str().unwrap());
    }

    // Pushing again gives the same manifest (deterministic compression), uploading nothing.
    env.run(&[
        "push",
        "-q",
        "--tls-verify=false",
        "--digestfile",
        digestfile.to_str().unwrap(),
        "bb",
        &dest,
    ])
    .success();
    assert_eq!(
        fs::read_to_string(&digestfile).unwrap(),
        sha256_digest(raw.as_bytes())
    );

    // v2s2 and zstd: skopeo reads both back into archives that keep the config bytes (a
    // docker archive holds no zstd layers) and burrow loads them as the same image.
    for (extra, name, transport) in [
        (["--format", "v2s2"], "v2s2", "docker-archive"),
        (["--compression-format", "zstd"], "zstd", "oci-archive"),
    ] {
        let to = format!("{}/{name}/bb:1", reg.addr());
        let mut args = vec!["push", "--tls-verify=false"];
        args.extend(extra);
        args.extend(["bb", to.as_str()]);
        env.run(&args).success();
        let archive = env.home().join(format!("{name}.tar"));
        skopeo(
            &env,
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{to}"),
                &format!("{transport}:{}:x/{name}:1", archive.display()),
            ],
        )
        .success();
        env.run(&["load", "-i", archive.to_str().unwrap()]).success();
        assert_eq!(inspect(&env, &format!("x/{name}:1"))["Id"], id.as_str(), "{name}");
    }
    let raw = skopeo(
        &env,
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{}/v2s2/bb:1", reg.addr()),
        ],
    );
    assert!(raw
        .success()
        .stdout
        .contains("application/vnd.docker.distribution.manifest.v2+json"));

    // Bad destinations: a clear error.
    let out = env.run(&["push", "--tls-verify=false", "bb", "nohost"]);
    assert_eq!(out.code, 125, "{out}");
    let out = env.run(&[
        "push",
        "--tls-verify=false",
        "--format",
        "v2s2",
        "--compression-format",
        "zstd",
        "bb",
        &dest,
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("zstd"), "{out}");
}

/// PUTs `body` to the registry at `addr` (plain HTTP); returns the status line.
fn http_put(addr: &str, path: &str, content_type: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.lines().next().unwrap_or_default().to_string()
}

#[test]
fn t303_a_manifest_list_gives_the_platform_asked_for() {
    let env = TestEnv::new();
    let reg = TestRegistry::plain();
    let addr = reg.addr();
    let image = |content: &str| ImageSpec {
        layers: vec![
            Layer::new(busybox_rootfs_entries().unwrap()),
            Layer::new(vec![Entry::file("platform", content)]),
        ],
        compression: Compression::Gzip,
        ..ImageSpec::default()
    };
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    for (tag, arch) in [("native", oci_arch()), ("other", "riscv64")] {
        let d = skopeo_push(&env, &image(tag), &format!("{addr}/ml:{tag}"));
        let raw = skopeo(
            &env,
            &[
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{addr}/ml:{tag}"),
            ],
        );
        let raw = raw.success().stdout.clone();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(raw.as_bytes()),
            "size": raw.len(),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        ids.push(hex(&d.config).to_string());
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let status = http_put(
        &addr,
        "/v2/ml/manifests/list",
        "application/vnd.oci.image.index.v1+json",
        &index_bytes,
    );
    assert!(status.contains(" 201 "), "{status}");
    let list = format!("{addr}/ml:list");
    let out = env.run(&["pull", "-q", "--tls-verify=false", &list]);
    assert_eq!(out.success().stdout, format!("{}\n", ids[0]), "{out}");
    // As Podman: Digest is the list's, RepoDigests name the list and the instance.
    let index_digest = sha256_digest(&index_bytes);
    let v = inspect(&env, &list);
    assert_eq!(v["Digest"], index_digest.as_str(), "{v}");
    let instance = entries[0]["digest"].as_str().unwrap();
    let repo_digests: Vec<&str> = v["RepoDigests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        repo_digests.contains(&format!("{addr}/ml@{index_digest}").as_str()),
        "{v}"
    );
    assert!(
        repo_digests.contains(&format!("{addr}/ml@{instance}").as_str()),
        "{v}"
    );
    let out = env.run(&["run", "--rm", &list, "cat", "/platform"]);
    assert_eq!(out.success().stdout, "native", "{out}");
    let out = env.run(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        "linux/riscv64",
        &list,
    ]);
    assert_eq!(out.success().stdout, format!("{}\n", ids[1]), "{out}");
    let out = env.run(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &list,
    ]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("no image found in manifest list"), "{out}");
}
