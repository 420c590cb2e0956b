//! Files as tar entries, for `cp` (a tree as a stream) and `commit` (a container's changes as
//! a layer): owners (through a function: shifted, or replaced), modes, mtimes, symlinks, hard
//! links, FIFOs, and the `user.*`/`security.capability` xattrs as PAX records (overlay's own
//! `user.overlay.*` stay out). Symlinks are stored, never followed.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What an entry's owner becomes: (uid, gid) on disk → (uid, gid) in the archive.
pub type OwnerMap<'a> = &'a dyn Fn(u32, u32) -> (u32, u32);

pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First archived name of each multiply-linked inode.
    links: HashMap<(u64, u64), PathBuf>,
}

pub use burrow_storage::export::archive_xattrs as xattrs;

/// Whether `path` has the overlay xattr that makes a directory opaque.
pub fn is_opaque(path: &Path) -> bool {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: valid C strings and buffer.
    let len = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"user.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len == 1 && value[0] == b'y'
}

/// A 0/0 character device: how overlayfs marks a deleted file.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        TarWriter {
            builder,
            links: HashMap::new(),
        }
    }

    /// Appends the file at `path` (not its contents if a directory) as `name`.
    pub fn append_node(
        &mut self,
        path: &Path,
        name: &Path,
        meta: &Metadata,
        owner: OwnerMap,
    ) -> io::Result<()> {
        let ft = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        let (uid, gid) = owner(meta.uid(), meta.gid());
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        let attrs = xattrs(path);
        if !attrs.is_empty() {
            let records: Vec<(String, &[u8])> = attrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))?;
        }
        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                return self.builder.append_link(&mut header, name, first.clone());
            }
            self.links.insert(key, name.to_path_buf());
        }
        if ft.is_symlink() {
            let target = fs::read_link(path)?;
            header.set_size(0);
            return self.builder.append_link(&mut header, name, target);
        }
        if ft.is_file() {
            return self.builder.append_data(&mut header, name, File::open(path)?);
        }
        if ft.is_dir() || ft.is_fifo() {
            header.set_size(0);
            return self.builder.append_data(&mut header, name, io::empty());
        }
        // Sockets and devices have no place in an archive made in a user namespace.
        Ok(())
    }

    /// Appends `path` as `name`, and everything under it (sorted) if it is a directory.
    pub fn append_tree(&mut self, path: &Path, name: &Path, owner: OwnerMap) -> io::Result<()> {
        let meta = fs::symlink_metadata(path)?;
        self.append_node(path, name, &meta, owner)?;
        if meta.is_dir() {
            self.append_children(path, name, owner)?;
        }
        Ok(())
    }

    /// Appends what directory `path` holds, under `name` (empty: at the top).
    pub fn append_children(&mut self, path: &Path, name: &Path, owner: OwnerMap) -> io::Result<()> {
        let mut children: Vec<_> = fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        children.sort();
        for child in children {
            self.append_tree(&path.join(&child), &name.join(&child), owner)?;
        }
        Ok(())
    }

    /// An empty regular file entry (OCI whiteouts `.wh.NAME` and `.wh..wh..opq`).
    pub fn append_marker(&mut self, name: &Path) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        header.set_mtime(0);
        self.builder.append_data(&mut header, name, io::empty())
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}
