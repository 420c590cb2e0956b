//! Tar-split: what a layer's tar stream had besides its files' contents, so the exact
//! stream (and so its digest, the diff_id) can be rebuilt from the extracted tree.
//!
//! Why this and not a copy of the received blob: `save` must write layers whose digests
//! are the `rootfs.diff_ids` the image config names, or the image id (the config's digest)
//! would change. Re-tarring the tree cannot give the original bytes (header fields, entry
//! order, padding, PAX records all vary between tar writers), and keeping the received
//! blob would store every layer twice. Like containers/storage, we keep the headers and
//! padding (a few hundred bytes per file, gzip'd) and take file contents from the tree.
//! Rebuilt streams are hashed and checked against the diff_id while written.
//!
//! File format (gzip): records `R` u32-LE length, raw bytes; `F` u64-LE size, u32-LE
//! path length, path (relative to the layer's `diff` dir): `size` bytes of that file's
//! content. A file that a later entry of the same layer replaced keeps its content in
//! `overrides/<n>` (n counts `F` records from 0).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::StoreError;

pub const FILE_NAME: &str = "tar-split.gz";
const OVERRIDES: &str = "overrides";
const FLUSH_AT: usize = 1 << 20;

/// Records a tar stream as it is read (see [`Recorder::consume`]).
pub struct Recorder {
    out: GzEncoder<io::BufWriter<fs::File>>,
    raw: Vec<u8>,
    content_left: u64,
    refs: HashMap<PathBuf, u64>,
    next_ref: u64,
    /// The layer's directory (holding `diff`, the tar-split file and `overrides`).
    layer_dir: PathBuf,
}

pub type Shared = Rc<RefCell<Recorder>>;

impl Recorder {
    pub fn create(layer_dir: &Path) -> Result<Shared, StoreError> {
        let path = layer_dir.join(FILE_NAME);
        let file = fs::File::create(&path).map_err(|e| StoreError::io("creating", &path, e))?;
        Ok(Rc::new(RefCell::new(Recorder {
            out: GzEncoder::new(io::BufWriter::new(file), flate2::Compression::fast()),
            raw: Vec::new(),
            content_left: 0,
            refs: HashMap::new(),
            next_ref: 0,
            layer_dir: layer_dir.to_path_buf(),
        })))
    }

    /// Takes bytes the tar reader consumed: content bytes are skipped, the rest kept.
    pub fn consume(&mut self, mut buf: &[u8]) -> io::Result<()> {
        if self.content_left > 0 {
            let n = (buf.len() as u64).min(self.content_left) as usize;
            self.content_left -= n as u64;
            buf = &buf[n..];
        }
        self.raw.extend_from_slice(buf);
        if self.raw.len() >= FLUSH_AT {
            self.flush_raw()?;
        }
        Ok(())
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        self.out.write_all(b"R")?;
        self.out.write_all(&(self.raw.len() as u32).to_le_bytes())?;
        self.out.write_all(&self.raw)?;
        self.raw.clear();
        Ok(())
    }

    /// The next `size` bytes the tar reader consumes are the content of `rel` (relative
    /// to `diff`), which is being extracted there.
    pub fn begin_content(&mut self, rel: &Path, size: u64) -> io::Result<()> {
        self.flush_raw()?;
        let path = rel.as_os_str().as_encoded_bytes();
        self.out.write_all(b"F")?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&(path.len() as u32).to_le_bytes())?;
        self.out.write_all(path)?;
        self.content_left = size;
        self.refs.insert(rel.to_path_buf(), self.next_ref);
        self.next_ref += 1;
        Ok(())
    }

    /// `rel` is about to be replaced or removed: if an earlier entry's content is there,
    /// keep a copy for the rebuild.
    pub fn before_replace(&mut self, rel: &Path) -> Result<(), StoreError> {
        let Some(n) = self.refs.remove(rel) else {
            return Ok(());
        };
        let dir = self.layer_dir.join(OVERRIDES);
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
        let src = self.layer_dir.join("diff").join(rel);
        let dst = dir.join(n.to_string());
        fs::copy(&src, &dst).map_err(|e| StoreError::io("keeping", &src, e))?;
        Ok(())
    }

    pub fn finish(&mut self) -> io::Result<()> {
        self.flush_raw()?;
        self.out.try_finish()?;
        // Not fsynced, like the layer's files (see crate::ingest): one synced file of an
        // unsynced layer would promise nothing.
        self.out.get_mut().flush()
    }
}

/// Rebuilds the tar stream of the layer in `layer_dir` into `out`, checking that its
/// sha256 is `diff_id` (hex). Returns the stream's size.
pub fn rebuild(layer_dir: &Path, diff_id: &str, out: &mut dyn Write) -> Result<u64, StoreError> {
    let path = layer_dir.join(FILE_NAME);
    let file = fs::File::open(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            StoreError::BadLayer(format!(
                "layer {diff_id} was stored without its tar metadata and cannot be saved; remove and load its image again"
            ))
        } else {
            StoreError::io("opening", &path, e)
        }
    })?;
    let mut split = io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        size: 0,
    };
    let corrupt = |what: &str| StoreError::BadLayer(format!("layer {diff_id}: tar metadata {what}"));
    let diff = layer_dir.join("diff");
    let overrides = layer_dir.join(OVERRIDES);
    let has_overrides = overrides.exists();
    let mut n = 0u64;
    let mut tag = [0u8; 1];
    loop {
        match split.read_exact(&mut tag) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(StoreError::io("reading", &path, e)),
        }
        match tag[0] {
            b'R' => {
                let len = read_u32(&mut split).map_err(|_| corrupt("truncated"))?;
                io::copy(&mut (&mut split).take(len.into()), &mut hashing)
                    .map_err(|e| StoreError::io("writing", &path, e))?;
            }
            b'F' => {
                let size = read_u64(&mut split).map_err(|_| corrupt("truncated"))?;
                let len = read_u32(&mut split).map_err(|_| corrupt("truncated"))?;
                let mut name = vec![0u8; len as usize];
                split.read_exact(&mut name).map_err(|_| corrupt("truncated"))?;
                let rel = PathBuf::from(std::ffi::OsString::from_vec(name));
                let src = if has_overrides && overrides.join(n.to_string()).exists() {
                    overrides.join(n.to_string())
                } else {
                    diff.join(&rel)
                };
                n += 1;
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&src)
                    .map_err(|e| StoreError::io("reading", &src, e))?;
                let copied = io::copy(&mut file.take(size), &mut hashing)
                    .map_err(|e| StoreError::io("reading", &src, e))?;
                if copied != size {
                    return Err(StoreError::BadLayer(format!(
                        "layer {diff_id}: {} is shorter than when it was stored",
                        src.display()
                    )));
                }
            }
            _ => return Err(corrupt("corrupt")),
        }
    }
    let got = crate::layers::hex(&hashing.hasher.finalize());
    if got != diff_id {
        return Err(StoreError::BadLayer(format!(
            "layer {diff_id}: the rebuilt tar stream has digest sha256:{got}; the layer's files were changed"
        )));
    }
    Ok(hashing.size)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
    size: u64,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{extract_recorded, IdLimits};

    fn rebuilt(data: &[u8]) -> Vec<u8> {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("diff")).unwrap();
        let split = Recorder::create(tmp.path()).unwrap();
        let limits = IdLimits {
            uids: u32::MAX,
            gids: u32::MAX,
        };
        let out = extract_recorded(data, &tmp.path().join("diff"), limits, Some(split)).unwrap();
        let mut again = Vec::new();
        let size = rebuild(tmp.path(), &out.diff_id, &mut again).unwrap();
        assert_eq!(size, data.len() as u64);
        again
    }

    #[test]
    fn rebuilds_the_exact_stream() {
        let mut b = tar::Builder::new(Vec::new());
        let uid = nix::unistd::getuid().as_raw().into();
        let gid = nix::unistd::getgid().as_raw().into();
        let mut add = |path: &str, data: &[u8], kind: tar::EntryType, link: Option<&str>| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(1_700_000_000);
            h.set_size(data.len() as u64);
            match link {
                Some(l) => b.append_link(&mut h, path, l).unwrap(),
                None => b.append_data(&mut h, path, data).unwrap(),
            }
        };
        add("d/", b"", tar::EntryType::Directory, None);
        add("d/a", b"first content", tar::EntryType::Regular, None);
        add("d/empty", b"", tar::EntryType::Regular, None);
        add("d/big", &vec![7u8; 70_000], tar::EntryType::Regular, None);
        add("d/hard", b"", tar::EntryType::Link, Some("d/a"));
        add("d/sym", b"", tar::EntryType::Symlink, Some("a"));
        let long = format!("d/{}", "x".repeat(150));
        add(&long, b"long name", tar::EntryType::Regular, None);
        // The same path again: the first content must survive for the rebuild.
        add("d/a", b"second", tar::EntryType::Regular, None);
        let mut data = b.into_inner().unwrap();
        // Some writers pad the stream beyond the end-of-archive blocks.
        data.extend_from_slice(&[0u8; 4096]);
        assert_eq!(rebuilt(&data), data);
    }
}
