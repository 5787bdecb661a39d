//! The file system a sandboxed program sees, built in its private mount namespace:
//!
//! 1. directories that may hold secrets or other users' files (`/root`, `/home`, `/tmp`, ...)
//!    are covered by empty tmpfs mounts;
//! 2. the interpreter's own directories below them (pyenv lives in `/root/.pyenv`) are put
//!    back, as detached copies of their mounts taken before the covering;
//! 3. every mount is made read-only and nosuid (`mount_setattr`, recursive);
//! 4. the work directory becomes a fresh, size-limited tmpfs owned by the sandbox uid (noexec),
//!    the only writable place; nothing the program writes reaches the host's disk.
//!
//! Paths are prepared in the parent; [`MountPlan::apply`] runs between fork and exec and makes
//! only system calls.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Interpreter directories that can be put back (prefix, base prefix, executable's directory).
const MAX_EXPOSURES: usize = 4;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// What [`MountPlan::apply`] achieved.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MountOutcome {
    /// Every hidden directory is covered and every exposure put back.
    pub hidden: bool,
    /// Every mount is read-only.
    pub read_only: bool,
    /// The work directory is a private tmpfs.
    pub work_dir_in_memory: bool,
}

/// A directory of the interpreter to put back below a hidden directory.
struct Exposure {
    path: CString,
    /// Directories to create inside the covering tmpfs, outermost first, ending with `path`.
    parents: Vec<CString>,
}

/// The mounts of one run, prepared in the parent.
pub(crate) struct MountPlan {
    root: CString,
    tmpfs: CString,
    hidden: Vec<CString>,
    hidden_options: CString,
    exposures: Vec<Exposure>,
    workdir: CString,
    workdir_parents: Vec<CString>,
    workdir_options: CString,
}

impl MountPlan {
    /// Plans the mounts for a run in `workdir` (absolute, canonical). `hidden_dirs` that do not
    /// exist are skipped; `exposed` are the interpreter's directories (canonical).
    pub fn new(
        workdir: &Path,
        hidden_dirs: &[PathBuf],
        exposed: &[PathBuf],
        workdir_bytes: u64,
        owner: Option<u32>,
    ) -> io::Result<Self> {
        let hidden = existing_hidden_dirs(hidden_dirs);
        let mut exposures = Vec::new();
        for path in outermost(exposed) {
            if let Some(cover) = hidden.iter().find(|cover| path.starts_with(cover)) {
                let parents = components_below(cover, &path)
                    .iter()
                    .map(|p| c_path(p))
                    .collect();
                exposures.push(Exposure {
                    path: c_path(&path)?,
                    parents: parents_ok(parents)?,
                });
            }
        }
        if exposures.len() > MAX_EXPOSURES {
            return Err(io::Error::other(
                "more interpreter directories than the sandbox can expose",
            ));
        }
        let workdir_parents = match hidden.iter().find(|cover| workdir.starts_with(cover)) {
            Some(cover) => parents_ok(
                components_below(cover, workdir)
                    .iter()
                    .map(|p| c_path(p))
                    .collect(),
            )?,
            None => Vec::new(),
        };
        let owner = owner
            .map(|uid| format!(",uid={uid},gid={uid}"))
            .unwrap_or_default();
        Ok(MountPlan {
            root: CString::from(c"/"),
            tmpfs: CString::from(c"tmpfs"),
            hidden: hidden
                .iter()
                .map(|dir| c_path(dir))
                .collect::<io::Result<_>>()?,
            hidden_options: CString::from(c"size=64k,nr_inodes=256,mode=0755"),
            exposures,
            workdir: c_path(workdir)?,
            workdir_parents,
            workdir_options: CString::new(format!("size={workdir_bytes},mode=0700{owner}"))
                .map_err(io::Error::other)?,
        })
    }

    /// Builds the view in the current (new, private) mount namespace.
    ///
    /// # Safety
    /// Must run in a forked child that has its own mount namespace, before `exec`.
    pub unsafe fn apply(&self) -> io::Result<MountOutcome> {
        let mut outcome = MountOutcome::default();
        let null = std::ptr::null::<libc::c_char>();
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(null, self.root.as_ptr(), null, private, std::ptr::null()) != 0 {
            // Without private propagation every further mount would leak to the host.
            return Ok(outcome);
        }
        let mut trees: [RawFd; MAX_EXPOSURES] = [-1; MAX_EXPOSURES];
        for (tree, exposure) in trees.iter_mut().zip(&self.exposures) {
            let flags = libc::OPEN_TREE_CLONE | libc::AT_RECURSIVE as u32 | libc::O_CLOEXEC as u32;
            *tree = libc::syscall(
                libc::SYS_open_tree,
                libc::AT_FDCWD,
                exposure.path.as_ptr(),
                flags,
            ) as RawFd;
        }
        outcome.hidden = true;
        let hidden_flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        for dir in &self.hidden {
            let options = self.hidden_options.as_ptr().cast();
            if libc::mount(
                self.tmpfs.as_ptr(),
                dir.as_ptr(),
                self.tmpfs.as_ptr(),
                hidden_flags,
                options,
            ) != 0
            {
                outcome.hidden = false;
            }
        }
        for (&tree, exposure) in trees.iter().zip(&self.exposures) {
            make_dirs(&exposure.parents);
            let empty = c"".as_ptr();
            let moved = tree >= 0
                && libc::syscall(
                    libc::SYS_move_mount,
                    tree,
                    empty,
                    libc::AT_FDCWD,
                    exposure.path.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) == 0;
            outcome.hidden &= moved;
            if tree >= 0 {
                libc::close(tree);
            }
        }
        make_dirs(&self.workdir_parents);
        let read_only = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        outcome.read_only = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            self.root.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &read_only as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) == 0;
        // Mounted after the read-only pass, so it stays writable.
        let options = self.workdir_options.as_ptr().cast();
        let workdir = self.workdir.as_ptr();
        if libc::mount(
            self.tmpfs.as_ptr(),
            workdir,
            self.tmpfs.as_ptr(),
            hidden_flags,
            options,
        ) != 0
        {
            // The work directory may now be read-only or hidden: there is nowhere to write.
            return Err(io::Error::last_os_error());
        }
        outcome.work_dir_in_memory = true;
        Ok(outcome)
    }
}

/// Whether `path` (canonical) is reachable by a uid other than its owner once the hidden
/// directories are covered and `exposed` put back: directories created in the covering tmpfs
/// are searchable by all; real directories must have their "others may search" bit.
pub(crate) fn reachable_by_others(path: &Path, hidden: &[PathBuf], exposed: &[PathBuf]) -> bool {
    let covers = existing_hidden_dirs(hidden);
    let roots = outermost(exposed);
    let synthetic = |directory: &Path| {
        covers.iter().any(|cover| directory.starts_with(cover))
            && roots
                .iter()
                .any(|root| root.starts_with(directory) && root != directory)
    };
    path.ancestors().skip(1).all(|directory| {
        synthetic(directory)
            || std::fs::metadata(directory)
                .map(|metadata| {
                    std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o001 != 0
                })
                .unwrap_or(false)
    })
}

fn existing_hidden_dirs(hidden_dirs: &[PathBuf]) -> Vec<PathBuf> {
    hidden_dirs
        .iter()
        .filter_map(|dir| dir.canonicalize().ok())
        .filter(|dir| dir.is_dir() && dir.parent().is_some())
        .collect()
}

/// `paths` without those inside another one (a copied mount brings its subdirectories).
fn outermost(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut kept: Vec<PathBuf> = Vec::new();
    for path in paths {
        if !paths
            .iter()
            .any(|other| other != path && path.starts_with(other))
            && !kept.contains(path)
        {
            kept.push(path.clone());
        }
    }
    kept
}

/// The directories strictly below `cover` down to and including `path`, outermost first.
fn components_below(cover: &Path, path: &Path) -> Vec<PathBuf> {
    let mut below: Vec<PathBuf> = path
        .ancestors()
        .take_while(|dir| *dir != cover)
        .map(Path::to_path_buf)
        .collect();
    below.reverse();
    below
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn parents_ok(parents: Vec<io::Result<CString>>) -> io::Result<Vec<CString>> {
    parents.into_iter().collect()
}

/// Creates each directory (mode 0755); existing ones are fine.
unsafe fn make_dirs(dirs: &[CString]) {
    for dir in dirs {
        libc::mkdir(dir.as_ptr(), 0o755);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposures_keep_only_outermost_directories() {
        let paths = [
            PathBuf::from("/a/b"),
            PathBuf::from("/a/b/c"),
            PathBuf::from("/d"),
            PathBuf::from("/a/b"),
        ];
        assert_eq!(
            outermost(&paths),
            vec![PathBuf::from("/a/b"), PathBuf::from("/d")]
        );
    }

    #[test]
    fn components_below_a_cover_are_listed_outermost_first() {
        let below = components_below(Path::new("/root"), Path::new("/root/.pyenv/versions/3.11"));
        let expected = [
            "/root/.pyenv",
            "/root/.pyenv/versions",
            "/root/.pyenv/versions/3.11",
        ];
        assert_eq!(
            below,
            expected.iter().map(PathBuf::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_private_directory_is_reachable_once_covered_and_exposed() {
        let base = tempfile::tempdir().expect("temporary directory");
        let private = base.path().join("private");
        let inner = private.join("inner");
        std::fs::create_dir_all(&inner).expect("create dirs");
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .expect("chmod")
        };
        mode(base.path(), 0o755);
        mode(&private, 0o700);
        mode(&inner, 0o755);
        let inner = inner.canonicalize().expect("canonical");
        let private = private.canonicalize().expect("canonical");
        let target = inner.join("python");
        assert!(!reachable_by_others(&target, &[], &[]));
        let covered = std::slice::from_ref(&private);
        assert!(reachable_by_others(
            &target,
            covered,
            std::slice::from_ref(&inner)
        ));
        // Covering without exposing leaves it unreachable (the real directory is hidden).
        assert!(!reachable_by_others(&target, covered, &[]));
    }
}
