//! A directory tree as a tar stream (`export`): owners as seen in the user namespace (the
//! container's ids), modes, mtimes, symlinks, hard links, FIFOs, `user.*` and
//! `security.capability` xattrs; entries sorted, directories before their contents.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The extended attributes of `path` that belong in an archive: `user.*` (but not
/// overlayfs' own) and `security.capability`.
pub fn archive_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 4096];
    // SAFETY: valid path and buffer of the given size.
    let n = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n <= 0 {
        return Vec::new();
    }
    names.truncate(n as usize);
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let text = String::from_utf8_lossy(name).into_owned();
        if !(text.starts_with("user.") || text == "security.capability") || text.starts_with("user.overlay.")
        {
            continue;
        }
        let Ok(c) = CString::new(name) else { continue };
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe { libc::lgetxattr(p.as_ptr(), c.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        if len >= 0 {
            value.truncate(len as usize);
            out.push((text, value));
        }
    }
    out
}

/// Writes the tree at `root` as a tar to `out`.
pub fn tree_tar(root: &Path, out: &mut dyn Write) -> Result<(), StoreError> {
    let werr = |e: io::Error| StoreError::io("writing", Path::new("the archive"), e);
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| StoreError::io("reading", &dir, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| StoreError::io("reading", &dir, e))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let meta = fs::symlink_metadata(&path).map_err(|e| StoreError::io("reading", &path, e))?;
            let ft = meta.file_type();
            let attrs = archive_xattrs(&path);
            if !attrs.is_empty() {
                let records: Vec<(String, &[u8])> = attrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                tar.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                    .map_err(werr)?;
            }
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            // Permission bits only, as GNU tar and Podman write them.
            h.set_mode(meta.mode() & 0o7777);
            if ft.is_dir() {
                tar.append_data(&mut h, &rel_path, io::empty()).map_err(werr)?;
                subdirs.push(rel_path);
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).map_err(|e| StoreError::io("reading", &path, e))?;
                tar.append_link(&mut h, &rel_path, &target).map_err(werr)?;
            } else if meta.nlink() > 1 && links.contains_key(&(meta.dev(), meta.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                tar.append_link(&mut h, &rel_path, &links[&(meta.dev(), meta.ino())])
                    .map_err(werr)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    links.insert((meta.dev(), meta.ino()), rel_path.clone());
                }
                let file = File::open(&path).map_err(|e| StoreError::io("reading", &path, e))?;
                tar.append_data(&mut h, &rel_path, file).map_err(werr)?;
            } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
                h.set_size(0);
                tar.append_data(&mut h, &rel_path, io::empty()).map_err(werr)?;
            }
            // Sockets are not archived (as tar does).
        }
        // Depth first, in name order: push in reverse.
        stack.extend(subdirs.into_iter().rev());
    }
    tar.finish().map_err(werr)?;
    Ok(())
}
