//! Image commands: `images` (table, `--format`, `--filter`, `-q`), `inspect`, `tag`, `untag`,
//! `image exists`, `history`, `rmi` (refusal while a container uses the image) and `image prune`.

use burrow_tests::image_gen::{sample_image, ImageDigests};
use burrow_tests::TestEnv;
use serde_json::Value;

/// A store with the sample image loaded as `localhost/sample:v1`.
fn env_with_sample() -> (TestEnv, ImageDigests) {
    let env = TestEnv::new();
    let archive = env.home().join("sample.tar");
    let digests = sample_image()
        .unwrap()
        .write_docker_archive(&archive, "localhost/sample:v1")
        .unwrap();
    let out = env.run(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        out.success().stdout,
        "Loaded image: localhost/sample:v1\n",
        "{out}"
    );
    (env, digests)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// Top-level entries of the store's layer directory (none hidden: no leftovers).
fn layer_dirs(env: &TestEnv) -> Vec<String> {
    let dir = env.data_dir().join("burrow/storage/layers");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn images_table_quiet_and_formats() {
    let (env, d) = env_with_sample();
    let id = hex(&d.config);
    let out = env.run(&["images"]);
    let lines: Vec<&str> = out.success().stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    // Podman's columns, padded as its tabwriter does (min width 12, padding 2).
    assert_eq!(
        lines[0], "REPOSITORY        TAG         IMAGE ID      CREATED      SIZE",
        "{out}"
    );
    let want = format!("localhost/sample  v1          {}  ", &id[..12]);
    assert!(lines[1].starts_with(&want), "{out}");
    assert!(
        lines[1].contains(" years ago  ") && lines[1].ends_with(" MB"),
        "{out}"
    );

    assert_eq!(
        env.run(&["images", "-q"]).success().stdout,
        format!("{}\n", &id[..12])
    );
    assert_eq!(
        env.run(&["images", "-q", "--no-trunc"]).success().stdout,
        format!("sha256:{id}\n")
    );
    let out = env.run(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}} {{json .Labels}} {{.Dangling}}",
    ]);
    assert_eq!(
        out.success().stdout,
        format!(
            "localhost/sample:v1 {} {{\"org.burrow.test\":\"sample\"}} false\n",
            &id[..12]
        )
    );
    let out = env.run(&["images", "--format", "table {{.ID}} {{.Repository}}"]);
    assert_eq!(
        out.success().stdout,
        format!("IMAGE ID      REPOSITORY\n{}  localhost/sample\n", &id[..12])
    );
    let out = env.run(&[
        "images",
        "--format",
        "{{range .Names}}[{{.}}]{{end}}{{if .Dangling}}x{{else}}y{{end}}",
    ]);
    assert_eq!(out.success().stdout, "[localhost/sample:v1]y\n");

    let out = env.run(&["images", "--format", "json"]);
    let list: Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(list[0]["Id"], id, "{out}");
    assert_eq!(list[0]["Names"], serde_json::json!(["localhost/sample:v1"]));
    assert_eq!(list[0]["Created"], 1_700_000_000);
    assert!(list[0]["Digest"].as_str().unwrap().starts_with("sha256:"));
    let out = env.run(&["images", "--digests"]);
    assert!(
        out.success().stdout.lines().next().unwrap().contains("DIGEST"),
        "{out}"
    );

    let bad = env.run(&["images", "--format", "{{.NoSuchField}}"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(
        bad.stderr.starts_with("Error: ") && bad.stderr.contains("NoSuchField"),
        "{bad}"
    );
}

#[test]
fn images_filters() {
    let (env, d) = env_with_sample();
    env.import_busybox("bb"); // created now: newer than the sample (2023)
    let id = &hex(&d.config)[..12];
    let q = |filter: &str| {
        env.run(&["images", "-q", "--filter", filter])
            .success()
            .stdout
            .clone()
    };
    assert_eq!(q("reference=sample"), format!("{id}\n"));
    assert_eq!(q("reference=*sampl*"), format!("{id}\n"));
    assert_eq!(q("reference=localhost/sample:v1"), format!("{id}\n"));
    assert_eq!(q("reference=sample:v2"), "");
    assert_eq!(q("label=org.burrow.test=sample"), format!("{id}\n"));
    assert_eq!(q("label=org.burrow.test"), format!("{id}\n"));
    assert_eq!(q("before=bb"), format!("{id}\n"));
    assert_eq!(q("since=sample:v1").lines().count(), 1);
    assert_ne!(q("since=sample:v1"), format!("{id}\n"));
    assert_eq!(q("dangling=true"), "");
    assert_eq!(q("dangling=false").lines().count(), 2);
    let out = env.run(&["images", "-q", "sample"]);
    assert_eq!(out.success().stdout, format!("{id}\n"));
    let bad = env.run(&["images", "--filter", "foo=bar"]);
    assert_eq!(bad.code, 125, "{bad}");
    assert!(bad.stderr.contains("unsupported image filter \"foo\""), "{bad}");
}

#[test]
fn tag_untag_exists_and_inspect() {
    let (env, d) = env_with_sample();
    env.run(&["tag", "sample:v1", "other", "quay.io/x/y:z"]).success();
    let names = env.run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = names.success().stdout.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["localhost/other:latest", "localhost/sample:v1", "quay.io/x/y:z"]
    );
    let by_tag = env.run(&["images", "--sort", "tag", "--format", "{{.Tag}}"]);
    assert_eq!(by_tag.success().stdout, "latest\nv1\nz\n", "{by_tag}");
    let by_repo = env.run(&["images", "--sort", "repository", "--format", "{{.Repository}}"]);
    assert_eq!(
        by_repo.success().stdout,
        "localhost/other\nlocalhost/sample\nquay.io/x/y\n",
        "{by_repo}"
    );
    assert_eq!(env.run(&["images", "--sort", "bogus"]).code, 125);
    assert_eq!(env.run(&["image", "exists", "other"]).code, 0);
    env.run(&["untag", "sample:v1", "other"]).success();
    assert_eq!(env.run(&["image", "exists", "other"]).code, 1);
    let out = env.run(&["untag", "sample:v1", "nope:1"]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("localhost/nope:1: tag not known"), "{out}");
    let out = env.run(&["tag", "sample:v1", "Bad:x"]);
    assert_eq!(out.code, 125, "{out}");

    let out = env.run(&["image", "inspect", "sample:v1"]);
    let v: Value = serde_json::from_str(&out.success().stdout).unwrap();
    let i = &v[0];
    assert_eq!(i["Id"], hex(&d.config), "{out}");
    assert_eq!(
        i["RepoTags"],
        serde_json::json!(["localhost/sample:v1", "quay.io/x/y:z"])
    );
    assert_eq!(i["RootFS"]["Layers"], serde_json::json!(d.diff_ids));
    assert_eq!(
        i["Config"]["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "echo sample"])
    );
    assert_eq!(i["Config"]["WorkingDir"], "/opt");
    assert_eq!(i["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(i["Os"], "linux");
    assert_eq!(i["History"].as_array().unwrap().len(), 3);
    let digest = i["Digest"].as_str().unwrap();
    assert_eq!(i["RepoDigests"][0], format!("localhost/sample@{digest}"));
    assert!(i["Size"].as_u64().unwrap() > 1_000_000);

    let out = env.run(&[
        "inspect",
        "--format",
        "{{.Id}} {{.Config.WorkingDir}} {{json .Config.Labels}}",
        "sample:v1",
    ]);
    assert_eq!(
        out.success().stdout,
        format!("{} /opt {{\"org.burrow.test\":\"sample\"}}\n", hex(&d.config))
    );
    // Fields the image does not set are there, empty, as in Podman's struct.
    let out = env.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.Entrypoint}} {{.Config.StopSignal}}{{.Config.User}}|{{index .Config.Labels \"org.burrow.test\"}}",
        "sample:v1",
    ]);
    assert_eq!(out.success().stdout, "[] |sample\n", "{out}");
    let out = env.run(&["inspect", "nope"]);
    assert_eq!((out.code, out.stdout.trim()), (125, "[]"), "{out}");
    assert_eq!(out.stderr, "Error: inspecting object: no such object: \"nope\"\n");
    let out = env.run(&["image", "inspect", "nope"]);
    assert_eq!(
        out.stderr, "Error: inspecting object: nope: image not known\n",
        "{out}"
    );
}

#[test]
fn history_lists_layers_newest_first() {
    let (env, d) = env_with_sample();
    let out = env.run(&["history", "sample:v1"]);
    let lines: Vec<&str> = out.success().stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("ID            CREATED      CREATED BY"),
        "{out}"
    );
    assert!(lines[1].starts_with(&hex(&d.config)[..12]), "{out}");
    assert!(
        lines[2].starts_with("<missing>") && lines[3].starts_with("<missing>"),
        "{out}"
    );
    assert!(lines[3].contains("2.14 MB"), "{out}");
    let out = env.run(&["history", "-q", "--no-trunc", "sample:v1"]);
    assert_eq!(
        out.success().stdout,
        format!("{}\n<missing>\n<missing>\n", hex(&d.config))
    );
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let (env, d) = env_with_sample();
    let id = hex(&d.config);
    env.run(&["run", "--name", "c1", "sample:v1", "true"]).success();
    let out = env.run(&["rmi", "sample:v1"]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.starts_with("Error: image used by ")
            && out.stderr.ends_with(
                ": image is in use by a container: consider listing external containers and force-removing image\n"
            ),
        "{out}"
    );
    assert_eq!(env.run(&["image", "exists", "sample:v1"]).code, 0);
    // Another name only untags.
    env.run(&["tag", "sample:v1", "second"]).success();
    let out = env.run(&["rmi", &id[..12]]);
    assert_eq!(out.code, 125, "{out}");
    assert!(out.stderr.contains("by ID with more than one tag"), "{out}");
    let out = env.run(&["rmi", "second"]);
    assert_eq!(out.success().stdout, "Untagged: localhost/second:latest\n");
    // -f removes the container too, then the image and its layers.
    let out = env.run(&["rmi", "-f", "sample:v1"]);
    assert_eq!(
        out.success().stdout,
        format!("Untagged: localhost/sample:v1\nDeleted: {id}\n")
    );
    assert_eq!(env.run(&["images", "-q"]).success().stdout, "");
    assert_eq!(layer_dirs(&env), Vec::<String>::new());
    let out = env.run(&["rmi", "sample:v1"]);
    assert_eq!(out.code, 1, "{out}");
    assert_eq!(out.stderr, "Error: sample:v1: image not known\n");
    // Podman's -f passes over a missing image.
    env.run(&["rmi", "-f", "sample:v1"]).success();
}

#[test]
fn rmi_keeps_layers_other_images_use_and_prune_removes_dangling() {
    let (env, d) = env_with_sample();
    env.import_busybox("bb");
    // The imported busybox rootfs is the very tar of the sample's bottom layer: stored once.
    let before = layer_dirs(&env);
    assert_eq!(before.len(), 3, "{before:?}");
    // One more image sharing that layer.
    let mut spec = sample_image().unwrap();
    spec.layers.truncate(1);
    let archive = env.home().join("base.tar");
    spec.write_oci_archive(&archive).unwrap();
    env.run(&["load", "-i", archive.to_str().unwrap()]).success();
    env.run(&["rmi", "sample:v1"]).success();
    assert_eq!(layer_dirs(&env), [hex(&d.diff_ids[0])]);

    env.run(&["untag", "bb"]).success();
    let out = env.run(&[
        "images",
        "--filter",
        "dangling=true",
        "--format",
        "{{.Repository}} {{.Tag}}",
    ]);
    assert_eq!(out.success().stdout, "<none> <none>\n");
    let out = env.run(&["image", "prune", "-f"]);
    assert_eq!(out.success().stdout.lines().count(), 1, "{out}");
    assert_eq!(env.run(&["images", "-q"]).success().stdout.lines().count(), 1);
    let out = env.run(&["image", "prune", "-a", "-f"]);
    assert_eq!(out.success().stdout.lines().count(), 1, "{out}");
    assert_eq!(env.run(&["images", "-q"]).success().stdout, "");
    assert_eq!(layer_dirs(&env), Vec::<String>::new());
}
