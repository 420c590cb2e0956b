//! Multi-layer images written as an OCI image layout (directory), an OCI archive (that layout in a tar)
//! or a `docker save` archive (`manifest.json`, `repositories`, `<id>/layer.tar`).
//!
//! Blobs are built in memory (test images are small), then laid out. Digests are `sha256:<hex>`;
//! `diff_ids` are the digests of the uncompressed layer tars.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{busybox_rootfs_entries, Entry, Layer, CREATED, MTIME};

pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// How layer blobs are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar (`...layer.v1.tar`; what `docker save` writes).
    None,
    /// gzip, no timestamp in the header (`...layer.v1.tar+gzip`; what registries mostly serve).
    #[default]
    Gzip,
    /// zstd (`...layer.v1.tar+zstd`).
    Zstd,
}

/// The image config fields tests care about (the `config` object of the OCI image config).
/// `None` / empty fields are left out of the JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` strings.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `"8080/tcp"`, `"53/udp"`.
    pub exposed_ports: Vec<String>,
    /// Container paths: `"/data"`.
    pub volumes: Vec<String>,
}

/// An image: layers bottom first, its config, how layers are compressed, and the tag written in the OCI
/// layout (`org.opencontainers.image.ref.name`, so `oci:DIR:TAG` finds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub layers: Vec<Layer>,
    pub config: ImageConfig,
    pub compression: Compression,
    pub ref_name: Option<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            layers: Vec::new(),
            config: ImageConfig::default(),
            compression: Compression::Gzip,
            ref_name: Some("latest".to_string()),
        }
    }
}

/// The digests of what a writer wrote, all `sha256:<hex>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    /// The manifest's digest (OCI writers); `None` for a docker archive, which has no manifest blob.
    pub manifest: Option<String>,
    /// The config blob's digest: the image ID Podman and Docker show.
    pub config: String,
    /// The layer blobs' digests (compressed if compressed).
    pub layers: Vec<String>,
    /// The uncompressed layers' digests (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// The architecture name Go (and so OCI) uses for the machine the tests run on.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A file of an image layout or archive: `(path, contents)`.
type NamedBlob = (String, Vec<u8>);

struct BuiltLayer {
    blob: Vec<u8>,
    digest: String,
    diff_id: String,
}

struct Built {
    layers: Vec<BuiltLayer>,
    config: Vec<u8>,
    config_digest: String,
    layer_media_type: &'static str,
}

impl Built {
    fn manifest(&self) -> Vec<u8> {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": self.layer_media_type, "digest": l.digest, "size": l.blob.len()}))
            .collect();
        let m = json!({
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": self.config_digest, "size": self.config.len()},
            "layers": layers,
        });
        serde_json::to_vec(&m).expect("json")
    }

    fn digests(&self, manifest: Option<String>) -> ImageDigests {
        ImageDigests {
            manifest,
            config: self.config_digest.clone(),
            layers: self.layers.iter().map(|l| l.digest.clone()).collect(),
            diff_ids: self.layers.iter().map(|l| l.diff_id.clone()).collect(),
        }
    }
}

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    // GzBuilder writes mtime 0 unless told otherwise: deterministic output.
    let mut enc = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

impl ImageConfig {
    fn to_json(&self) -> Value {
        let mut c = Map::new();
        let strings = |v: &[String]| Value::from(v.to_vec());
        let set =
            |v: &[String]| -> Value { Value::Object(v.iter().map(|k| (k.clone(), json!({}))).collect()) };
        if !self.env.is_empty() {
            c.insert("Env".into(), strings(&self.env));
        }
        if let Some(v) = &self.entrypoint {
            c.insert("Entrypoint".into(), strings(v));
        }
        if let Some(v) = &self.cmd {
            c.insert("Cmd".into(), strings(v));
        }
        if let Some(v) = &self.working_dir {
            c.insert("WorkingDir".into(), v.clone().into());
        }
        if let Some(v) = &self.user {
            c.insert("User".into(), v.clone().into());
        }
        if !self.labels.is_empty() {
            c.insert("Labels".into(), json!(self.labels));
        }
        if !self.exposed_ports.is_empty() {
            c.insert("ExposedPorts".into(), set(&self.exposed_ports));
        }
        if !self.volumes.is_empty() {
            c.insert("Volumes".into(), set(&self.volumes));
        }
        Value::Object(c)
    }
}

impl ImageSpec {
    fn build(&self) -> io::Result<Built> {
        let mut layers = Vec::new();
        for layer in &self.layers {
            let tar = layer.tar_bytes()?;
            let diff_id = sha256_digest(&tar);
            let blob = match self.compression {
                Compression::None => tar,
                Compression::Gzip => gzip(&tar)?,
                Compression::Zstd => zstd::encode_all(tar.as_slice(), 3)?,
            };
            layers.push(BuiltLayer {
                digest: sha256_digest(&blob),
                blob,
                diff_id,
            });
        }
        let history: Vec<Value> = (0..layers.len())
            .map(|i| json!({"created": CREATED, "created_by": format!("burrow-testimg layer {i}")}))
            .collect();
        let config = json!({
            "created": CREATED,
            "architecture": oci_arch(),
            "os": "linux",
            "config": self.config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": history,
        });
        let config = serde_json::to_vec(&config).expect("json");
        Ok(Built {
            config_digest: sha256_digest(&config),
            config,
            layers,
            layer_media_type: match self.compression {
                Compression::None => MT_OCI_LAYER_TAR,
                Compression::Gzip => MT_OCI_LAYER_GZIP,
                Compression::Zstd => MT_OCI_LAYER_ZSTD,
            },
        })
    }

    /// The files of the OCI layout, in the order an archive should hold them: `(path, contents)`.
    fn oci_layout_files(&self) -> io::Result<(Vec<NamedBlob>, ImageDigests)> {
        let built = self.build()?;
        let manifest = built.manifest();
        let manifest_digest = sha256_digest(&manifest);
        let mut desc =
            json!({"mediaType": MT_OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()});
        if let Some(r) = &self.ref_name {
            desc["annotations"] = json!({"org.opencontainers.image.ref.name": r});
        }
        let index = json!({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [desc]});
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            (
                "index.json".to_string(),
                serde_json::to_vec(&index).expect("json"),
            ),
        ];
        let blob = |d: &str| format!("blobs/sha256/{}", hex_of(d));
        files.push((blob(&manifest_digest), manifest));
        files.push((blob(&built.config_digest), built.config.clone()));
        for l in &built.layers {
            files.push((blob(&l.digest), l.blob.clone()));
        }
        Ok((files, built.digests(Some(manifest_digest))))
    }

    /// Writes an OCI image layout into `dir` (created if missing; existing blobs are overwritten).
    pub fn write_oci_layout(&self, dir: &Path) -> io::Result<ImageDigests> {
        let (files, digests) = self.oci_layout_files()?;
        fs::create_dir_all(dir.join("blobs/sha256"))?;
        for (path, data) in files {
            fs::write(dir.join(path), data)?;
        }
        Ok(digests)
    }

    /// Writes an OCI archive: the OCI layout as a tar (`oci-archive:PATH`).
    pub fn write_oci_archive(&self, path: &Path) -> io::Result<ImageDigests> {
        let (files, digests) = self.oci_layout_files()?;
        let mut tar = tar::Builder::new(io::BufWriter::new(fs::File::create(path)?));
        append_dir(&mut tar, "blobs")?;
        append_dir(&mut tar, "blobs/sha256")?;
        for (name, data) in &files {
            append_file(&mut tar, name, data)?;
        }
        tar.into_inner()?.flush()?;
        Ok(digests)
    }

    /// Writes a `docker save` archive tagged `repo_tag` (`"localhost/name:tag"`): layers as
    /// `<id>/layer.tar` (gzip inside if [`Compression::Gzip`]; Docker itself writes plain ones),
    /// `<config hex>.json`, `manifest.json` and `repositories`. `<id>` is the layer's chain ID hex.
    pub fn write_docker_archive(&self, path: &Path, repo_tag: &str) -> io::Result<ImageDigests> {
        let built = self.build()?;
        let (repo, tag) = match repo_tag.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (repo_tag, "latest"),
        };
        let mut tar = tar::Builder::new(io::BufWriter::new(fs::File::create(path)?));
        let mut layer_paths = Vec::new();
        let mut chain: Option<String> = None;
        for l in &built.layers {
            let id = match &chain {
                None => l.diff_id.clone(),
                Some(prev) => sha256_digest(format!("{prev} {}", l.diff_id).as_bytes()),
            };
            let hexid = hex_of(&id).to_string();
            let mut v1 = json!({"id": hexid, "created": CREATED});
            if let Some(prev) = &chain {
                v1["parent"] = hex_of(prev).into();
            }
            append_dir(&mut tar, &hexid)?;
            append_file(&mut tar, &format!("{hexid}/VERSION"), b"1.0")?;
            append_file(
                &mut tar,
                &format!("{hexid}/json"),
                &serde_json::to_vec(&v1).expect("json"),
            )?;
            append_file(&mut tar, &format!("{hexid}/layer.tar"), &l.blob)?;
            layer_paths.push(format!("{hexid}/layer.tar"));
            chain = Some(id);
        }
        let config_name = format!("{}.json", hex_of(&built.config_digest));
        append_file(&mut tar, &config_name, &built.config)?;
        let manifest =
            json!([{"Config": config_name, "RepoTags": [format!("{repo}:{tag}")], "Layers": layer_paths}]);
        append_file(
            &mut tar,
            "manifest.json",
            &serde_json::to_vec(&manifest).expect("json"),
        )?;
        if let Some(top) = &chain {
            let repositories = json!({ repo: { tag: hex_of(top) } });
            append_file(
                &mut tar,
                "repositories",
                &serde_json::to_vec(&repositories).expect("json"),
            )?;
        }
        tar.into_inner()?.flush()?;
        Ok(built.digests(None))
    }
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_mtime(MTIME);
    h.set_size(0);
    tar.append_data(&mut h, format!("{path}/"), io::empty())
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_size(data.len() as u64);
    tar.append_data(&mut h, path, data)
}

/// A three-layer image for image-store tests, on top of the busybox rootfs:
///
/// - layer 0: the busybox rootfs ([`busybox_rootfs_entries`]).
/// - layer 1: `/etc/motd`, `/opt/data/{a,b}`, `/opt/keep`.
/// - layer 2: whiteout of `/etc/motd`; `/opt/data` made opaque and given `c` (so it holds only `c`);
///   `/opt/suid` (root, 4755); `/opt/xattr` with `user.burrow.test=layer2`; `/opt/fifo`;
///   `/opt/link -> keep`; `/opt/hardlink` (hard link to `/opt/suid-target`, owned 1000:1000).
///
/// Config: `Cmd ["/bin/sh","-c","echo sample"]`, `Env [PATH=..., SAMPLE=1]`, `WorkingDir /opt`,
/// label `org.burrow.test=sample`, `ExposedPorts 8080/tcp`, `Volumes /data`.
pub fn sample_image() -> io::Result<ImageSpec> {
    let layer1 = Layer::new(vec![
        Entry::file("etc/motd", "layer 1 motd\n"),
        Entry::dir("opt"),
        Entry::dir("opt/data"),
        Entry::file("opt/data/a", "a\n"),
        Entry::file("opt/data/b", "b\n"),
        Entry::file("opt/keep", "keep\n"),
    ]);
    let layer2 = Layer::new(vec![
        Entry::whiteout("etc/motd"),
        Entry::dir("opt"),
        Entry::dir("opt/data"),
        Entry::opaque("opt/data"),
        Entry::file("opt/data/c", "c\n"),
        Entry::file("opt/suid", "#!/bin/sh\nid\n").mode(0o755).setuid(),
        Entry::file("opt/xattr", "xattr\n").xattr("user.burrow.test", b"layer2"),
        Entry::fifo("opt/fifo"),
        Entry::symlink("opt/link", "keep"),
        Entry::file("opt/suid-target", "linked\n").owner(1000, 1000),
        Entry::hardlink("opt/hardlink", "opt/suid-target"),
    ]);
    Ok(ImageSpec {
        layers: vec![Layer::new(busybox_rootfs_entries()?), layer1, layer2],
        config: ImageConfig {
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), "echo sample".into()]),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "SAMPLE=1".into(),
            ],
            working_dir: Some("/opt".into()),
            labels: BTreeMap::from([("org.burrow.test".to_string(), "sample".to_string())]),
            exposed_ports: vec!["8080/tcp".into()],
            volumes: vec!["/data".into()],
            ..ImageConfig::default()
        },
        ..ImageSpec::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    fn small_spec(compression: Compression) -> ImageSpec {
        ImageSpec {
            layers: vec![
                Layer::new(vec![
                    Entry::dir("etc"),
                    Entry::file("etc/a", "a"),
                    Entry::file("etc/b", "b"),
                ]),
                Layer::new(vec![
                    Entry::dir("etc"),
                    Entry::whiteout("etc/a"),
                    Entry::opaque("etc"),
                    Entry::file("etc/s", "s").setuid().owner(0, 0),
                    Entry::file("etc/x", "x").xattr("user.k", b"v"),
                ]),
            ],
            config: ImageConfig {
                cmd: Some(vec!["sh".into()]),
                entrypoint: Some(vec!["/bin/env".into()]),
                env: vec!["A=1".into()],
                working_dir: Some("/w".into()),
                user: Some("1000:1000".into()),
                labels: BTreeMap::from([("l".into(), "v".into())]),
                exposed_ports: vec!["80/tcp".into()],
                volumes: vec!["/v".into()],
            },
            compression,
            ref_name: Some("t1".into()),
        }
    }

    fn untar(data: &[u8]) -> HashMap<String, Vec<u8>> {
        let mut out = HashMap::new();
        for e in tar::Archive::new(data).entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            out.insert(p, v);
        }
        out
    }

    fn decompress(blob: &[u8], c: Compression) -> Vec<u8> {
        match c {
            Compression::None => blob.to_vec(),
            Compression::Gzip => {
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(blob).read_to_end(&mut v).unwrap();
                v
            }
            Compression::Zstd => zstd::decode_all(blob).unwrap(),
        }
    }

    /// Checks an OCI layout given as path -> bytes; returns the uncompressed layer tars.
    fn check_oci_layout(files: &HashMap<String, Vec<u8>>, c: Compression, d: &ImageDigests) -> Vec<Vec<u8>> {
        let blob = |digest: &str| -> &Vec<u8> {
            let data = &files[&format!("blobs/sha256/{}", hex_of(digest))];
            assert_eq!(sha256_digest(data), digest, "blob content must match its name");
            data
        };
        let layout: Value = serde_json::from_slice(&files["oci-layout"]).unwrap();
        assert_eq!(layout["imageLayoutVersion"], "1.0.0");
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let desc = &index["manifests"][0];
        assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], "t1");
        let mdigest = desc["digest"].as_str().unwrap();
        assert_eq!(Some(mdigest), d.manifest.as_deref());
        let manifest: Value = serde_json::from_slice(blob(mdigest)).unwrap();
        assert_eq!(desc["size"], blob(mdigest).len());
        assert_eq!(manifest["mediaType"], MT_OCI_MANIFEST);
        let cdigest = manifest["config"]["digest"].as_str().unwrap();
        assert_eq!(cdigest, d.config);
        let config: Value = serde_json::from_slice(blob(cdigest)).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["sh"]));
        assert_eq!(config["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(config["config"]["Volumes"], json!({"/v": {}}));
        assert_eq!(config["config"]["User"], "1000:1000");
        assert_eq!(config["os"], "linux");
        let mut tars = Vec::new();
        for (i, l) in manifest["layers"].as_array().unwrap().iter().enumerate() {
            let want_mt = if c == Compression::Gzip {
                MT_OCI_LAYER_GZIP
            } else {
                MT_OCI_LAYER_TAR
            };
            assert_eq!(l["mediaType"], want_mt);
            let data = blob(l["digest"].as_str().unwrap());
            assert_eq!(l["size"], data.len());
            let tar = decompress(data, c);
            assert_eq!(
                config["rootfs"]["diff_ids"][i],
                sha256_digest(&tar),
                "diff_id of layer {i}"
            );
            tars.push(tar);
        }
        assert_eq!(config["rootfs"]["diff_ids"], json!(d.diff_ids));
        tars
    }

    fn check_layer_2(tar: &[u8]) {
        let mut names = Vec::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            if name == "etc/s" {
                assert_eq!(e.header().mode().unwrap(), 0o4644);
            }
            if name == "etc/x" {
                let pax: Vec<_> = e
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|x| x.unwrap().key().unwrap().to_string())
                    .collect();
                assert_eq!(pax, ["SCHILY.xattr.user.k"]);
            }
            names.push(name);
        }
        assert_eq!(names, ["etc/", "etc/.wh.a", "etc/.wh..wh..opq", "etc/s", "etc/x"]);
    }

    #[test]
    fn oci_layout_round_trips() {
        for c in [Compression::Gzip, Compression::None] {
            let dir = tempfile::tempdir().unwrap();
            let d = small_spec(c).write_oci_layout(dir.path()).unwrap();
            let mut files = HashMap::new();
            for p in ["oci-layout", "index.json"] {
                files.insert(p.to_string(), fs::read(dir.path().join(p)).unwrap());
            }
            for e in fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
                let e = e.unwrap();
                let name = format!("blobs/sha256/{}", e.file_name().to_string_lossy());
                files.insert(name, fs::read(e.path()).unwrap());
            }
            assert_eq!(
                files.len(),
                2 + 1 + 1 + 2,
                "layout, index, manifest, config, 2 layers"
            );
            let tars = check_oci_layout(&files, c, &d);
            check_layer_2(&tars[1]);
        }
    }

    #[test]
    fn oci_archive_round_trips_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let d = small_spec(Compression::Gzip).write_oci_archive(&a).unwrap();
        small_spec(Compression::Gzip).write_oci_archive(&b).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        let files = untar(&fs::read(&a).unwrap());
        let tars = check_oci_layout(&files, Compression::Gzip, &d);
        check_layer_2(&tars[1]);
    }

    #[test]
    fn docker_archive_round_trips() {
        for c in [Compression::None, Compression::Gzip] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("d.tar");
            let d = small_spec(c)
                .write_docker_archive(&path, "localhost/small:v1")
                .unwrap();
            assert_eq!(d.manifest, None);
            let files = untar(&fs::read(&path).unwrap());
            let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
            let m = &manifest[0];
            assert_eq!(m["RepoTags"], json!(["localhost/small:v1"]));
            let config_name = m["Config"].as_str().unwrap();
            let config = &files[config_name];
            assert_eq!(format!("{}.json", hex_of(&sha256_digest(config))), config_name);
            assert_eq!(sha256_digest(config), d.config);
            let config: Value = serde_json::from_slice(config).unwrap();
            let layers = m["Layers"].as_array().unwrap();
            assert_eq!(layers.len(), 2);
            for (i, l) in layers.iter().enumerate() {
                let tar = decompress(&files[l.as_str().unwrap()], c);
                assert_eq!(config["rootfs"]["diff_ids"][i], sha256_digest(&tar));
                if i == 1 {
                    check_layer_2(&tar);
                }
            }
            let repos: Value = serde_json::from_slice(&files["repositories"]).unwrap();
            let top = layers[1].as_str().unwrap().trim_end_matches("/layer.tar");
            assert_eq!(repos["localhost/small"]["v1"], top);
        }
    }

    #[test]
    fn sample_image_has_three_layers() {
        let dir = tempfile::tempdir().unwrap();
        let d = sample_image().unwrap().write_oci_layout(dir.path()).unwrap();
        assert_eq!(d.layers.len(), 3);
        assert_eq!(d.diff_ids.len(), 3);
    }
}
