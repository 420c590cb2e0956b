//! `burrow cp`: copy files between a container and the host, or a tar stream (`-`).
//!
//! The container's side runs in a helper process whose `/` is the container's root (a running
//! container's mount namespace, joined; or, stopped, its root filesystem mounted in a private
//! mount namespace and chrooted into: see `burrow_userns::exec::spawn_in_root`), so no path,
//! symlink or `..` there can reach the host. The two sides talk over pipes: the source side
//! describes what it copies (a JSON line), the destination side answers with the name the
//! top entry must have (Docker's rules: into an existing directory, or as a new name), then
//! the source side streams a tar of it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use burrow_storage::{ContainerRecord, ContainerState, Store};
use burrow_userns::exec::{spawn_in_root, View};
use serde::{Deserialize, Serialize};

use super::treetar::TarWriter;
use crate::context::Engine;
use crate::GlobalOptions;

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Chown copied files to the primary uid/gid of the destination container (from the host)
    #[arg(short = 'a', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    archive: bool,
    /// Allow directories to be overwritten with non-directories and vice versa
    #[arg(long)]
    overwrite: bool,
    /// SRC_PATH: CONTAINER:PATH, a host path, or - (a tar archive on standard input)
    src: String,
    /// DEST_PATH: CONTAINER:PATH, a host path, or - (a tar archive on standard output)
    dest: String,
}

/// One side of a copy.
enum Side {
    Stream,
    Host(String),
    Container(Box<ContainerRecord>, String),
}

/// What the source side copies.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Source {
    /// Its base name (the top entry's default name).
    name: String,
    is_dir: bool,
    /// `DIR/.`: the directory's contents, not the directory.
    contents_only: bool,
}

/// The destination side's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// Name the top entry so (empty: the contents go at the top, with `contents_only`).
    Name(String),
    Failed(String),
}

fn parse_side(store: &Store, arg: &str) -> Side {
    if arg == "-" {
        return Side::Stream;
    }
    if let Some((ctr, path)) = arg.split_once(':') {
        if !ctr.is_empty() && !ctr.contains('/') {
            if let Ok(c) = store.container(ctr) {
                let path = if path.is_empty() { "/" } else { path };
                return Side::Container(Box::new(c), path.to_string());
            }
        }
    }
    Side::Host(arg.to_string())
}

fn base_name(path: &str) -> String {
    Path::new(path.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into())
}

/// Describes the file at `path` (`lstat`: a symlink is copied as one).
fn describe(path: &str) -> io::Result<Source> {
    let contents_only = path.ends_with("/.");
    let trimmed = if contents_only {
        &path[..path.len() - 1]
    } else {
        path
    };
    // A trailing slash resolves a symlink to a directory, as the shell does.
    let meta = if trimmed.ends_with('/') {
        std::fs::metadata(trimmed)?
    } else {
        std::fs::symlink_metadata(trimmed)?
    };
    if contents_only && !meta.is_dir() {
        return Err(io::Error::other(format!("{path}: not a directory")));
    }
    Ok(Source {
        name: base_name(trimmed),
        is_dir: meta.is_dir(),
        contents_only,
    })
}

/// Docker's rules for where a copy of `source` lands at `dest`: the directory to unpack into
/// and the top entry's name (empty: the contents, unpacked into the directory itself).
fn place(dest: &str, source: &Source, overwrite: bool) -> Result<(PathBuf, String), String> {
    let path = Path::new(dest);
    let parent_of = |p: &Path| {
        p.parent()
            .filter(|x| !x.as_os_str().is_empty())
            .unwrap_or(Path::new("/"))
            .to_path_buf()
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            if source.contents_only {
                Ok((path.to_path_buf(), String::new()))
            } else {
                Ok((path.to_path_buf(), source.name.clone()))
            }
        }
        Ok(_) => {
            if dest.ends_with('/') {
                return Err(format!("{dest:?}: not a directory"));
            }
            if source.is_dir && !overwrite {
                return Err(format!(
                    "cannot overwrite non-directory {dest:?} with a directory (use --overwrite)"
                ));
            }
            Ok((parent_of(path), base_name(dest)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if dest.ends_with('/') && !source.is_dir {
                return Err(format!("{dest:?} could not be found: no such directory"));
            }
            let parent = parent_of(path);
            if !parent.is_dir() {
                return Err(format!(
                    "{:?} could not be found: no such file or directory",
                    parent.display().to_string()
                ));
            }
            if source.contents_only {
                std::fs::create_dir(path).map_err(|e| format!("creating {dest}: {e}"))?;
                return Ok((path.to_path_buf(), String::new()));
            }
            Ok((parent, base_name(dest)))
        }
        Err(e) => Err(format!("{dest}: {e}")),
    }
}

/// Writes `path` as a tar whose top entry is `name` (empty: its contents at the top).
pub(crate) fn pack(path: &str, name: &str, owner: Option<(u32, u32)>, out: impl Write) -> io::Result<()> {
    let keep = |u: u32, g: u32| owner.unwrap_or((u, g));
    let mut tar = TarWriter::new(out);
    let src = Path::new(path.trim_end_matches("/."));
    if name.is_empty() {
        tar.append_children(src, Path::new(""), &keep)?;
    } else {
        tar.append_tree(src, Path::new(name), &keep)?;
    }
    tar.finish()?.flush()
}

/// Unpacks the tar `input` into `dir` (owners and xattrs kept with `owners`), then reads
/// what follows the archive's end, so that the writer never sees a broken pipe.
pub(crate) fn unpack(input: impl Read, dir: &Path, owners: bool) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(owners);
    archive.set_unpack_xattrs(owners);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.unpack(dir)?;
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

/// An I/O error as Go's errors read (`no such file or directory`).
pub(crate) fn io_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
        None => e.to_string(),
    }
}

fn send_line<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

fn read_line<T: for<'de> Deserialize<'de>>(r: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(io::Error::other)
}

fn pipe() -> Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// Where the helper works: the running container's namespaces, or its root mounted privately.
fn view_of<'a>(
    store: &Store,
    c: &ContainerRecord,
    launch: &'a crate::launch::Launch,
    mountpoint: &'a Path,
) -> View<'a> {
    let _ = store;
    match (c.state, c.pid) {
        (ContainerState::Running, Some(pid)) => View::Running { pid },
        _ => View::Stopped {
            rootfs: &launch.rootfs,
            mountpoint,
        },
    }
}

fn raw(f: &File) -> std::os::fd::RawFd {
    f.as_raw_fd()
}

pub fn cp(args: CpArgs, global: &GlobalOptions) -> Result<i32> {
    let engine = Engine::open(global)?;
    let store = &engine.store;
    let (src, dest) = (parse_side(store, &args.src), parse_side(store, &args.dest));
    match (src, dest) {
        (Side::Container(c, path), dest @ (Side::Host(_) | Side::Stream)) => {
            copy_out(store, &c, &path, dest, &args)
        }
        (src @ (Side::Host(_) | Side::Stream), Side::Container(c, path)) => {
            copy_in(store, src, &c, &path, &args)
        }
        (Side::Container(..), Side::Container(..)) => {
            bail!("copying between containers is not supported: copy to the host first")
        }
        _ => {
            // Shaped as CONTAINER:PATH but naming no container: say which (as Podman does).
            let named = [&args.src, &args.dest]
                .into_iter()
                .filter_map(|a| a.split_once(':').map(|(c, _)| c))
                .find(|c| !c.is_empty() && !c.contains('/'));
            match named {
                Some(ctr) => bail!("container {ctr:?} does not exist"),
                None => bail!(
                    "invalid arguments {} and {}: one must be CONTAINER:PATH",
                    args.src,
                    args.dest
                ),
            }
        }
    }
}

fn copy_out(store: &Store, c: &ContainerRecord, path: &str, dest: Side, args: &CpArgs) -> Result<i32> {
    let launch = crate::launch::load(store, c)?;
    let mountpoint = store.container_dirs(&c.id).bundle.join("rootfs");
    let view = view_of(store, c, &launch, &mountpoint);
    let (info_r, info_w) = pipe()?;
    let (answer_r, answer_w) = pipe()?;
    let (data_r, data_w) = pipe()?;
    let container_path = path.to_string();
    let name = c.name.clone();
    let helper = spawn_in_root(&view, &[raw(&info_r), raw(&answer_w), raw(&data_r)], move || {
        let (mut info_w, mut answer_r, data_w) = (info_w, BufReader::new(answer_r), data_w);
        let source = describe(&container_path).map_err(|e| {
            format!(
                "{container_path:?} could not be found on container {name}: {}",
                io_text(&e)
            )
        })?;
        send_line(&mut info_w, &source).map_err(|e| e.to_string())?;
        drop(info_w);
        match read_line::<Answer>(&mut answer_r).map_err(|e| e.to_string())? {
            Some(Answer::Name(top)) => pack(&container_path, &top, None, io::BufWriter::new(data_w))
                .map_err(|e| format!("reading {container_path} in container {name}: {e}")),
            // The other side gave up and says why.
            _ => Ok(()),
        }
    })
    .map_err(crate::exit::ExitError::from)?;
    let mut info_r = BufReader::new(info_r);
    let mut answer_w = answer_w;
    let result = (|| -> Result<()> {
        let Some(source) = read_line::<Source>(&mut info_r)? else {
            return Ok(()); // the helper failed: its report says why
        };
        match &dest {
            Side::Stream => {
                let top = if source.contents_only {
                    String::new()
                } else {
                    source.name.clone()
                };
                send_line(&mut answer_w, &Answer::Name(top))?;
                drop(answer_w);
                let stdout = io::stdout();
                io::copy(&mut BufReader::new(data_r), &mut stdout.lock())?;
            }
            Side::Host(host) => match place(host, &source, args.overwrite) {
                Ok((dir, top)) => {
                    send_line(&mut answer_w, &Answer::Name(top))?;
                    drop(answer_w);
                    // Files on the host belong to the user, not to the container's ids.
                    unpack(BufReader::new(data_r), &dir, false)
                        .with_context(|| format!("copying into {}", dir.display()))?;
                }
                Err(e) => {
                    let _ = send_line(&mut answer_w, &Answer::Failed(e.clone()));
                    bail!("{e}");
                }
            },
            Side::Container(..) => unreachable!(),
        }
        Ok(())
    })();
    let helper_result = helper.wait();
    result?;
    helper_result.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(0)
}

fn copy_in(store: &Store, src: Side, c: &ContainerRecord, path: &str, args: &CpArgs) -> Result<i32> {
    let launch = crate::launch::load(store, c)?;
    let source = match &src {
        Side::Host(host) => Some(
            describe(host)
                .map_err(|e| anyhow::anyhow!("{host:?} could not be found on the host: {}", io_text(&e)))?,
        ),
        _ => None,
    };
    // -a: what comes from the host belongs to the container's user.
    let owner = match (&src, args.archive) {
        (Side::Host(_), true) => launch
            .spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid())),
        _ => None,
    };
    let mountpoint = store.container_dirs(&c.id).bundle.join("rootfs");
    let view = view_of(store, c, &launch, &mountpoint);
    let (answer_r, answer_w) = pipe()?;
    let (data_r, data_w) = pipe()?;
    let container_path = path.to_string();
    let name = c.name.clone();
    let overwrite = args.overwrite;
    let helper_source = source.clone();
    let helper = spawn_in_root(&view, &[raw(&answer_r), raw(&data_w)], move || {
        let mut answer_w = answer_w;
        let placed = match &helper_source {
            Some(s) => place(&container_path, s, overwrite),
            // A stream goes into a directory that exists.
            None => match std::fs::metadata(&container_path) {
                Ok(m) if m.is_dir() => Ok((PathBuf::from(&container_path), String::new())),
                Ok(_) => Err(format!("{container_path:?} is not a directory")),
                Err(e) => Err(format!(
                    "{container_path:?} could not be found on container {name}: {}",
                    io_text(&e)
                )),
            },
        };
        let (dir, top) = match placed {
            Ok(p) => p,
            Err(e) => {
                let _ = send_line(&mut answer_w, &Answer::Failed(e.clone()));
                return Err(e);
            }
        };
        send_line(&mut answer_w, &Answer::Name(top)).map_err(|e| e.to_string())?;
        drop(answer_w);
        unpack(BufReader::new(data_r), &dir, true)
            .map_err(|e| format!("copying into {} in container {name}: {e}", dir.display()))
    })
    .map_err(crate::exit::ExitError::from)?;
    let mut answer_r = BufReader::new(answer_r);
    let result = (|| -> Result<()> {
        // Anything but a name: the helper failed, and its report says why.
        if let Some(Answer::Name(top)) = read_line::<Answer>(&mut answer_r)? {
            match (&src, &source) {
                (Side::Host(host), Some(_)) => pack(host, &top, owner, io::BufWriter::new(data_w))
                    .with_context(|| format!("reading {host}"))?,
                _ => {
                    let mut data_w = data_w;
                    io::copy(&mut io::stdin().lock(), &mut data_w)?;
                }
            }
        }
        Ok(())
    })();
    let helper_result = helper.wait();
    helper_result.map_err(|e| anyhow::anyhow!("{e}"))?;
    // The helper unpacked all it needed: a pipe it closed after the archive's end is fine.
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
        Ok(()) => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, is_dir: bool) -> Source {
        Source {
            name: name.into(),
            is_dir,
            contents_only: false,
        }
    }

    #[test]
    fn places_as_docker_cp_does() {
        struct Tmp(PathBuf);
        impl Tmp {
            fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Tmp {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let tmp = Tmp(std::env::temp_dir().join(format!("burrow-cp-test-{}", std::process::id())));
        std::fs::create_dir_all(tmp.path()).unwrap();
        let d = tmp.path().join("dir");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let s = |p: &Path| p.display().to_string();
        // Into an existing directory, under the source's name.
        assert_eq!(
            place(&s(&d), &src("a", false), false).unwrap(),
            (d.clone(), "a".into())
        );
        // A new name in an existing directory.
        assert_eq!(
            place(&s(&d.join("new")), &src("a", true), false).unwrap(),
            (d.clone(), "new".into())
        );
        // Over a file: files yes, directories not without --overwrite.
        assert_eq!(
            place(&s(&tmp.path().join("file")), &src("a", false), false).unwrap(),
            (tmp.path().to_path_buf(), "file".into())
        );
        assert!(place(&s(&tmp.path().join("file")), &src("a", true), false).is_err());
        // The parent must exist; a trailing slash needs a directory.
        assert!(place(&s(&tmp.path().join("no/such")), &src("a", false), false).is_err());
        assert!(place(
            &format!("{}/", s(&tmp.path().join("nodir"))),
            &src("a", false),
            false
        )
        .is_err());
    }
}
