//! Test images made from local material only (no registry can be reached from CI).
//!
//! - [`busybox_rootfs_tar`] writes a root filesystem tarball for `burrow import`: the host's static busybox
//!   (Debian's `busybox-static`) with a link for every applet, plus files that exercise id mapping and tar
//!   corner cases (see [`busybox_rootfs_entries`] for the exact list).
//! - [`busybox_rootfs_once`] builds that tarball once per test process and hands out its path.
//! - [`Layer`], [`Entry`] and [`ImageSpec`] describe multi-layer images, written as an OCI layout, an OCI
//!   archive or a `docker save` archive by the functions in [`oci`] (re-exported here).
//!
//! Everything is deterministic: fixed mtimes, sorted JSON keys, gzip without a timestamp, so the same
//! spec always gives the same digests.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub mod oci;
pub use oci::{sample_image, Compression, ImageConfig, ImageDigests, ImageSpec};

/// The mtime of every entry written (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;
/// The same instant in RFC 3339, used for `created` in image configs.
pub const CREATED: &str = "2023-11-14T22:13:20Z";
/// Where the busybox binary is taken from (Debian's `busybox-static`); `$BURROW_TEST_BUSYBOX` overrides.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// What a layer entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file with this content.
    File(Vec<u8>),
    Dir,
    /// A symlink to this target (stored verbatim, relative or absolute).
    Symlink(String),
    /// A hard link to this other path of the same layer (relative to the root, no leading `/`).
    Hardlink(String),
    Fifo,
    /// Deletes `path` from the layers below: written as `dir/.wh.NAME`.
    Whiteout,
    /// Hides everything the layers below have in the directory `path`: written as `path/.wh..wh..opq`.
    Opaque,
}

/// One entry of a layer. Paths are relative to the root, without a leading `/` (a leading `/` is stripped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits including setuid/setgid/sticky (`0o4755`); the file type comes from `kind`.
    pub mode: u32,
    /// Extended attributes, written as PAX `SCHILY.xattr.NAME` records (use the `user.` namespace).
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(path: &str, kind: Kind, mode: u32) -> Entry {
        Entry {
            path: path.trim_start_matches('/').trim_end_matches('/').to_string(),
            kind,
            uid: 0,
            gid: 0,
            mode,
            xattrs: Vec::new(),
        }
    }
    /// A regular file, root-owned, mode 0644.
    pub fn file(path: &str, content: impl Into<Vec<u8>>) -> Entry {
        Entry::new(path, Kind::File(content.into()), 0o644)
    }
    /// A directory, root-owned, mode 0755.
    pub fn dir(path: &str) -> Entry {
        Entry::new(path, Kind::Dir, 0o755)
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::new(path, Kind::Symlink(target.to_string()), 0o777)
    }
    /// A hard link at `path` to `target`, an earlier entry of the same layer.
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::new(
            path,
            Kind::Hardlink(target.trim_start_matches('/').to_string()),
            0o644,
        )
    }
    pub fn fifo(path: &str) -> Entry {
        Entry::new(path, Kind::Fifo, 0o644)
    }
    /// Deletes `path` (file or directory) of the lower layers.
    pub fn whiteout(path: &str) -> Entry {
        Entry::new(path, Kind::Whiteout, 0o644)
    }
    /// Makes directory `dir` opaque: its lower-layer contents are hidden.
    pub fn opaque(dir: &str) -> Entry {
        Entry::new(dir, Kind::Opaque, 0o644)
    }
    pub fn owner(mut self, uid: u32, gid: u32) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    /// Adds the setuid bit.
    pub fn setuid(mut self) -> Entry {
        self.mode |= 0o4000;
        self
    }
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Entry {
        self.xattrs.push((name.to_string(), value.to_vec()));
        self
    }

    /// The path stored in the tar: whiteouts and opaque markers get their `.wh.` names.
    pub fn tar_path(&self) -> String {
        match self.kind {
            Kind::Whiteout => match self.path.rsplit_once('/') {
                Some((dir, name)) => format!("{dir}/.wh.{name}"),
                None => format!(".wh.{}", self.path),
            },
            Kind::Opaque => format!("{}/.wh..wh..opq", self.path),
            _ => self.path.clone(),
        }
    }
}

/// A layer: entries written in the order given (put directories before their contents, link targets
/// before the hard links to them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub entries: Vec<Entry>,
}

impl Layer {
    pub fn new(entries: Vec<Entry>) -> Layer {
        Layer { entries }
    }

    /// Writes the layer as an uncompressed tar stream.
    pub fn write_tar<W: Write>(&self, out: W) -> io::Result<W> {
        let mut tar = tar::Builder::new(out);
        for e in &self.entries {
            append_entry(&mut tar, e)?;
        }
        tar.into_inner()
    }

    /// The uncompressed tar as bytes.
    pub fn tar_bytes(&self) -> io::Result<Vec<u8>> {
        self.write_tar(Vec::new())
    }
}

fn append_entry<W: Write>(tar: &mut tar::Builder<W>, e: &Entry) -> io::Result<()> {
    if !e.xattrs.is_empty() {
        let records: Vec<(String, &[u8])> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_uid(e.uid.into());
    h.set_gid(e.gid.into());
    h.set_mode(e.mode);
    h.set_mtime(MTIME);
    h.set_size(0);
    let path = e.tar_path();
    match &e.kind {
        Kind::File(data) => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            tar.append_data(&mut h, &path, data.as_slice())
        }
        Kind::Whiteout | Kind::Opaque => {
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, &path, io::empty())
        }
        Kind::Dir => {
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, format!("{path}/"), io::empty())
        }
        Kind::Fifo => {
            h.set_entry_type(tar::EntryType::Fifo);
            tar.append_data(&mut h, &path, io::empty())
        }
        Kind::Symlink(target) => {
            h.set_entry_type(tar::EntryType::Symlink);
            tar.append_link(&mut h, &path, target)
        }
        Kind::Hardlink(target) => {
            h.set_entry_type(tar::EntryType::Link);
            tar.append_link(&mut h, &path, target)
        }
    }
}

/// The host busybox binary used for images: `$BURROW_TEST_BUSYBOX`, else [`HOST_BUSYBOX`].
pub fn host_busybox() -> PathBuf {
    std::env::var_os("BURROW_TEST_BUSYBOX").map_or_else(|| PathBuf::from(HOST_BUSYBOX), PathBuf::from)
}

/// The applets of `busybox` as `bin/NAME` or `sbin/NAME` (its `/usr/bin` and `/usr/sbin` ones are put
/// in `/bin` and `/sbin`), sorted, without `busybox` itself.
fn busybox_applets(busybox: &Path) -> io::Result<Vec<String>> {
    let out = Command::new(busybox).arg("--list-full").output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{} --list-full` failed",
            busybox.display()
        )));
    }
    let mut links = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (dir, name) = match line.trim().rsplit_once('/') {
            Some((dir, name)) => (dir.trim_start_matches("usr/"), name),
            None => continue,
        };
        if (dir == "bin" || dir == "sbin") && name != "busybox" && !name.is_empty() {
            links.insert(format!("{dir}/{name}"));
        }
    }
    Ok(links.into_iter().collect())
}

/// `/etc/passwd` of the test rootfs.
pub const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
user:x:1000:1000:Test user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";
/// `/etc/group` of the test rootfs.
pub const GROUP: &str = "root:x:0:
daemon:x:1:
bin:x:2:
tty:x:5:
user:x:1000:
nogroup:x:65534:
";
/// Content of `/srv/file` (and so of its hard link `/srv/hardlink`).
pub const SRV_FILE: &str = "hello from the burrow test image\n";

/// The entries of the busybox test rootfs:
///
/// | path | what |
/// |---|---|
/// | `/bin/busybox` | the host's static busybox, 0755 |
/// | `/bin/*`, `/sbin/*` | symlinks `-> /bin/busybox`, one per applet |
/// | `/etc/passwd`, `/etc/group` | [`PASSWD`], [`GROUP`]: root 0, daemon 1, bin 2, user 1000, nobody 65534; tty 5, nogroup 65534 |
/// | `/etc/os-release` | `ID=burrow-test` |
/// | `/tmp` 1777, `/root` 0700, `/proc` `/sys` 0555, `/dev` `/run` `/var` `/srv` 0755 | directories |
/// | `/home/user` | dir 0755 owned 1000:1000 |
/// | `/home/user/owned-by-1000` | file 0640 owned 1000:1000 |
/// | `/usr/local/bin/suid-sh` | small shell script, root-owned, mode 4755 |
/// | `/srv/file` | [`SRV_FILE`], 0644 |
/// | `/srv/hardlink` | hard link to `/srv/file` |
/// | `/srv/symlink` | symlink `-> file` |
/// | `/srv/fifo` | FIFO 0644 |
/// | `/srv/owned-2000-3000` | file 0644 owned 2000:3000 |
pub fn busybox_rootfs_entries() -> io::Result<Vec<Entry>> {
    let busybox = host_busybox();
    let binary = fs::read(&busybox).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot read {}: {e} (install Debian's busybox-static)",
                busybox.display()
            ),
        )
    })?;
    let applets = busybox_applets(&busybox)?;

    let mut v = vec![
        Entry::dir("bin"),
        Entry::dir("sbin"),
        Entry::dir("dev"),
        Entry::dir("proc").mode(0o555),
        Entry::dir("sys").mode(0o555),
        Entry::dir("run"),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("root").mode(0o700),
        Entry::dir("var"),
        Entry::dir("var/tmp").mode(0o1777),
        Entry::dir("etc"),
        Entry::file("etc/passwd", PASSWD),
        Entry::file("etc/group", GROUP),
        Entry::file("etc/os-release", "NAME=\"burrow test busybox\"\nID=burrow-test\n"),
        Entry::dir("home"),
        Entry::dir("home/user").owner(1000, 1000),
        Entry::file("home/user/owned-by-1000", "owned by 1000:1000\n")
            .owner(1000, 1000)
            .mode(0o640),
        Entry::dir("usr"),
        Entry::dir("usr/local"),
        Entry::dir("usr/local/bin"),
        Entry::file("usr/local/bin/suid-sh", "#!/bin/sh\nexec /bin/busybox id\n")
            .mode(0o755)
            .setuid(),
        Entry::dir("srv"),
        Entry::file("srv/file", SRV_FILE),
        Entry::hardlink("srv/hardlink", "srv/file"),
        Entry::symlink("srv/symlink", "file"),
        Entry::fifo("srv/fifo"),
        Entry::file("srv/owned-2000-3000", "owned by 2000:3000\n").owner(2000, 3000),
        Entry::file("bin/busybox", binary).mode(0o755),
    ];
    v.extend(applets.iter().map(|a| Entry::symlink(a, "/bin/busybox")));
    Ok(v)
}

/// Writes the busybox rootfs (see [`busybox_rootfs_entries`]) as an uncompressed tarball at `dest`.
pub fn busybox_rootfs_tar(dest: &Path) -> io::Result<()> {
    let layer = Layer::new(busybox_rootfs_entries()?);
    let tmp = dest.with_extension("tmp");
    let file = io::BufWriter::new(fs::File::create(&tmp)?);
    layer
        .write_tar(file)?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    fs::rename(&tmp, dest)
}

static BUSYBOX_DIR: OnceLock<PathBuf> = OnceLock::new();
static BUSYBOX_TAR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_busybox_dir() {
    if let Some(dir) = BUSYBOX_DIR.get() {
        let _ = fs::remove_dir_all(dir);
    }
}

/// The busybox rootfs tarball, built on first use into a per-process directory (mode 0755, under
/// `$BURROW_TEST_TMPDIR` or the system temp dir) that is removed when the process exits.
/// Panics if it cannot be built: every test that wants it would fail anyway.
pub fn busybox_rootfs_once() -> &'static Path {
    BUSYBOX_TAR.get_or_init(|| {
        let base = std::env::var_os("BURROW_TEST_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = tempfile::Builder::new()
            .prefix("img-")
            .permissions(fs::Permissions::from_mode(0o755))
            .tempdir_in(&base)
            .unwrap_or_else(|e| panic!("cannot create a temp dir in {}: {e}", base.display()))
            .keep();
        let _ = BUSYBOX_DIR.set(dir.clone());
        // SAFETY: registers a plain `extern "C" fn()` with no captured state; it only reads a OnceLock.
        unsafe { libc::atexit(remove_busybox_dir) };
        let tar = dir.join("busybox-rootfs.tar");
        busybox_rootfs_tar(&tar).unwrap_or_else(|e| panic!("cannot build the busybox rootfs tarball: {e}"));
        tar
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Read;

    /// path -> (entry type, uid, gid, mode, link name, content)
    type Listing = HashMap<String, (tar::EntryType, u64, u64, u32, Option<String>, Vec<u8>)>;

    pub(crate) fn list_tar(data: &[u8]) -> Listing {
        let mut ar = tar::Archive::new(data);
        let mut out = HashMap::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let h = e.header().clone();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let link = e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            let t = h.entry_type();
            out.insert(
                path,
                (
                    t,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                    link,
                    content,
                ),
            );
        }
        out
    }

    #[test]
    fn busybox_rootfs_has_what_tests_rely_on() {
        let tar = busybox_rootfs_once();
        let listing = list_tar(&fs::read(tar).unwrap());
        let bb = &listing["bin/busybox"];
        assert_eq!(bb.0, tar::EntryType::Regular);
        assert_eq!(bb.3, 0o755);
        assert!(bb.5.starts_with(b"\x7fELF"));
        for applet in ["bin/sh", "bin/ls", "bin/id", "sbin/ip", "bin/awk", "sbin/chroot"] {
            let l = listing.get(applet).unwrap_or_else(|| panic!("{applet} missing"));
            assert_eq!(
                (l.0, l.4.as_deref()),
                (tar::EntryType::Symlink, Some("/bin/busybox")),
                "{applet}"
            );
        }
        assert!(!listing.contains_key("usr/bin/awk"));
        assert_eq!(listing["tmp"].3, 0o1777);
        assert_eq!(listing["root"].3, 0o700);
        assert_eq!(listing["home/user"].1, 1000);
        let owned = &listing["home/user/owned-by-1000"];
        assert_eq!((owned.1, owned.2, owned.3), (1000, 1000, 0o640));
        assert_eq!(listing["usr/local/bin/suid-sh"].3, 0o4755);
        let odd = &listing["srv/owned-2000-3000"];
        assert_eq!((odd.1, odd.2), (2000, 3000));
        assert_eq!(listing["srv/hardlink"].0, tar::EntryType::Link);
        assert_eq!(listing["srv/hardlink"].4.as_deref(), Some("srv/file"));
        assert_eq!(listing["srv/symlink"].4.as_deref(), Some("file"));
        assert_eq!(listing["srv/fifo"].0, tar::EntryType::Fifo);
        for d in ["proc", "sys", "dev"] {
            assert_eq!(listing[d].0, tar::EntryType::Directory, "{d}");
        }
        let passwd = String::from_utf8(listing["etc/passwd"].5.clone()).unwrap();
        assert!(passwd
            .lines()
            .any(|l| l.starts_with("user:x:1000:1000:") && l.contains(":/home/user:")));
        assert!(String::from_utf8_lossy(&listing["etc/group"].5).contains("tty:x:5:"));
    }

    #[test]
    fn busybox_rootfs_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        busybox_rootfs_tar(&a).unwrap();
        busybox_rootfs_tar(&b).unwrap();
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap());
    }

    #[test]
    fn whiteout_and_opaque_paths() {
        assert_eq!(Entry::whiteout("/etc/motd").tar_path(), "etc/.wh.motd");
        assert_eq!(Entry::whiteout("top").tar_path(), ".wh.top");
        assert_eq!(Entry::opaque("opt/data/").tar_path(), "opt/data/.wh..wh..opq");
    }

    #[test]
    fn xattrs_are_pax_records() {
        let layer = Layer::new(vec![Entry::file("f", "x").xattr("user.burrow", b"v1")]);
        let data = layer.tar_bytes().unwrap();
        let mut ar = tar::Archive::new(data.as_slice());
        let mut e = ar.entries().unwrap().next().unwrap().unwrap();
        let pax: Vec<(String, Vec<u8>)> = e
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|x| {
                let x = x.unwrap();
                (x.key().unwrap().to_string(), x.value_bytes().to_vec())
            })
            .collect();
        assert_eq!(
            pax,
            vec![("SCHILY.xattr.user.burrow".to_string(), b"v1".to_vec())]
        );
        assert_eq!(e.path().unwrap().to_str(), Some("f"));
    }
}
