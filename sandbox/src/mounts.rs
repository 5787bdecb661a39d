//! The file system a sandboxed program sees: an allowlist, built in its private mount namespace.
//!
//! 1. a fresh tmpfs is mounted over the host's work directory and becomes the new root;
//! 2. only the allowed paths (`SandboxConfig::readable_paths`: `/usr`, `/lib*`, `/bin`, a few
//!    `/etc` files) and the interpreter's own directories are bind-mounted into it, plus
//!    `/dev/{null,zero,full,random,urandom}` and, with a PID namespace, a private `/proc`;
//! 3. `pivot_root` into it and the host's tree is detached: the repository, home directories,
//!    `data/eval`, model and checkpoint directories and other processes' `/proc` are not there;
//! 4. every mount is made read-only and nosuid (`mount_setattr`, recursive);
//! 5. the work directory (same path as on the host) becomes a fresh, size-limited tmpfs (noexec),
//!    the only writable place; nothing the program writes reaches the host's disk.
//!
//! `/proc` is mounted before the pivot on purpose: in a user namespace the kernel lets a new proc
//! mount happen only while a fully visible proc is in the mount namespace (the host's, still
//! attached then). Paths are prepared in the parent; [`RootPlan::apply`] runs between fork and
//! exec and makes only system calls.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Device files the program may open (Python opens /dev/null; numpy and others read urandom).
const DEVICES: [&str; 5] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

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

/// What [`RootPlan::apply`] achieved; `errno` is the first failure (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MountOutcome {
    /// The program's root is the allowlist view (the host tree detached).
    pub allowlist_root: bool,
    /// Every mount is read-only.
    pub read_only: bool,
    /// The work directory is a private tmpfs.
    pub work_dir_in_memory: bool,
    /// A private `/proc` of the PID namespace is mounted.
    pub private_proc: bool,
    /// The errno of the first step that failed.
    pub errno: i32,
}

/// The mounts of one run, prepared in the parent.
pub(crate) struct RootPlan {
    stage: CString,
    stage_options: CString,
    /// Directories to create in the new root (staged paths), parents first.
    dirs: Vec<CString>,
    dev: CString,
    /// Empty files to create as mount points (staged paths).
    files: Vec<CString>,
    /// (target, link path) of symlinks to recreate (`/lib` → `usr/lib` on merged-/usr systems).
    symlinks: Vec<(CString, CString)>,
    /// (host source, staged target) of recursive read-only bind mounts.
    binds: Vec<(CString, CString)>,
    proc_dir: CString,
    workdir: CString,
    workdir_options: CString,
    tmpfs: CString,
    proc_type: CString,
    dot: CString,
    slash: CString,
}

impl RootPlan {
    /// Plans the view for a run in `workdir` (absolute, canonical; also the staging mount
    /// point): `readable` paths that exist, and the interpreter's `exposed` directories.
    pub fn new(
        workdir: &Path,
        readable: &[PathBuf],
        exposed: &[PathBuf],
        workdir_bytes: u64,
        owner: Option<u32>,
    ) -> io::Result<Self> {
        let staged = |path: &Path| -> io::Result<CString> {
            let relative = path.strip_prefix("/").unwrap_or(path);
            c_path(&workdir.join(relative))
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        let add_dir = |dirs: &mut Vec<PathBuf>, path: &Path| {
            let mut current = PathBuf::from("/");
            for component in path.components() {
                if let Component::Normal(name) = component {
                    current.push(name);
                    if !dirs.contains(&current) {
                        dirs.push(current.clone());
                    }
                }
            }
        };
        let (mut files, mut symlinks, mut binds) = (Vec::new(), Vec::new(), Vec::new());
        let mut bound: Vec<PathBuf> = Vec::new();
        for path in readable.iter().chain(exposed) {
            if bound.iter().any(|done| path.starts_with(done)) {
                continue;
            }
            let Ok(metadata) = std::fs::symlink_metadata(path) else {
                continue;
            };
            if let Some(parent) = path.parent() {
                add_dir(&mut dirs, parent);
            }
            if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(path)?;
                symlinks.push((c_path(&target)?, staged(path)?));
                continue;
            }
            if metadata.is_dir() {
                add_dir(&mut dirs, path);
            } else {
                files.push(staged(path)?);
            }
            binds.push((c_path(path)?, staged(path)?));
            bound.push(path.clone());
        }
        for device in DEVICES {
            let device = Path::new(device);
            if device.exists() {
                files.push(staged(device)?);
                binds.push((c_path(device)?, staged(device)?));
            }
        }
        add_dir(&mut dirs, Path::new("/dev"));
        add_dir(&mut dirs, Path::new("/proc"));
        add_dir(&mut dirs, workdir);
        let owner = owner
            .map(|uid| format!(",uid={uid},gid={uid}"))
            .unwrap_or_default();
        Ok(RootPlan {
            stage: c_path(workdir)?,
            stage_options: CString::from(c"size=1m,nr_inodes=4096,mode=0755"),
            dirs: dirs
                .iter()
                .map(|dir| staged(dir))
                .collect::<io::Result<_>>()?,
            dev: staged(Path::new("/dev"))?,
            files,
            symlinks,
            binds,
            proc_dir: staged(Path::new("/proc"))?,
            workdir: c_path(workdir)?,
            workdir_options: CString::new(format!("size={workdir_bytes},mode=0700{owner}"))
                .map_err(io::Error::other)?,
            tmpfs: CString::from(c"tmpfs"),
            proc_type: CString::from(c"proc"),
            dot: CString::from(c"."),
            slash: CString::from(c"/"),
        })
    }

    /// Builds the view in the current (new, private) mount namespace and enters it. A failed
    /// step is recorded in the outcome; only a work directory that cannot be mounted is an error.
    ///
    /// # Safety
    /// Must run in a forked child that has its own mount namespace, before `exec`.
    pub unsafe fn apply(&self, mount_proc: bool) -> io::Result<MountOutcome> {
        let mut outcome = MountOutcome::default();
        let null = std::ptr::null::<libc::c_char>();
        let fail = |outcome: &mut MountOutcome| {
            if outcome.errno == 0 {
                outcome.errno = errno();
            }
        };
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(null, self.slash.as_ptr(), null, private, std::ptr::null()) != 0 {
            // Without private propagation every further mount would leak to the host.
            fail(&mut outcome);
            return Ok(outcome);
        }
        let locked = libc::MS_NOSUID | libc::MS_NODEV;
        if self.mount_tmpfs(&self.stage, locked, &self.stage_options) != 0 {
            fail(&mut outcome);
            return Ok(outcome);
        }
        let mut complete = true;
        for dir in &self.dirs {
            libc::mkdir(dir.as_ptr(), 0o755);
        }
        let dev_options = c"size=64k,nr_inodes=64,mode=0755";
        if self.mount_tmpfs(&self.dev, locked | libc::MS_NOEXEC, dev_options) != 0 {
            fail(&mut outcome);
            complete = false;
        }
        for file in &self.files {
            let fd = libc::open(
                file.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
        }
        for (target, link) in &self.symlinks {
            if libc::symlink(target.as_ptr(), link.as_ptr()) != 0 {
                fail(&mut outcome);
                complete = false;
            }
        }
        for (source, target) in &self.binds {
            let flags = libc::MS_BIND | libc::MS_REC;
            if libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                null,
                flags,
                std::ptr::null(),
            ) != 0
            {
                fail(&mut outcome);
                complete = false;
            }
        }
        if mount_proc {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let proc = self.proc_type.as_ptr();
            outcome.private_proc =
                libc::mount(proc, self.proc_dir.as_ptr(), proc, flags, std::ptr::null()) == 0;
            if !outcome.private_proc {
                fail(&mut outcome);
            }
        }
        // `pivot_root(".", ".")` stacks the old root on the new one; detaching it leaves only
        // the new root, with no directory through which the host tree could be reached.
        // Where the pivot is refused (an initramfs root), the host tree stays, read-only below,
        // and the missing view is recorded rather than failing the run.
        let entered = libc::chdir(self.stage.as_ptr()) == 0
            && libc::syscall(libc::SYS_pivot_root, self.dot.as_ptr(), self.dot.as_ptr()) == 0
            && libc::umount2(self.dot.as_ptr(), libc::MNT_DETACH) == 0;
        if !entered {
            fail(&mut outcome);
        }
        libc::chdir(self.slash.as_ptr());
        outcome.allowlist_root = complete && entered;
        let read_only = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        outcome.read_only = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            self.slash.as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &read_only as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) == 0;
        if !outcome.read_only {
            fail(&mut outcome);
        }
        // Mounted after the read-only pass, so it stays writable.
        if self.mount_tmpfs(
            &self.workdir,
            locked | libc::MS_NOEXEC,
            &self.workdir_options,
        ) != 0
        {
            // The work directory is read-only now: there is nowhere to write.
            return Err(io::Error::last_os_error());
        }
        outcome.work_dir_in_memory = true;
        Ok(outcome)
    }

    unsafe fn mount_tmpfs(
        &self,
        target: &CString,
        flags: libc::c_ulong,
        options: &std::ffi::CStr,
    ) -> libc::c_int {
        let tmpfs = self.tmpfs.as_ptr();
        libc::mount(
            tmpfs,
            target.as_ptr(),
            tmpfs,
            flags,
            options.as_ptr().cast(),
        )
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Whether `path` (canonical) is reachable by a uid other than its owner in the allowlist view:
/// directories above the exposed roots are created there (mode 0755); those from an exposed
/// root down must have their "others may search" bit.
pub(crate) fn reachable_in_view(path: &Path, exposed: &[PathBuf]) -> bool {
    path.ancestors().skip(1).all(|directory| {
        let synthetic = exposed
            .iter()
            .any(|root| root.starts_with(directory) && root != directory);
        synthetic
            || std::fs::metadata(directory)
                .map(|metadata| {
                    std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o001 != 0
                })
                .unwrap_or(false)
    })
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(paths: &[CString]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_plan_stages_only_existing_allowed_paths_below_the_work_directory() {
        let work = Path::new("/tmp/mathrl-sandbox-x");
        let readable = [PathBuf::from("/usr"), PathBuf::from("/does/not/exist")];
        let exposed = [PathBuf::from("/usr/lib")];
        let plan = RootPlan::new(work, &readable, &exposed, 1 << 20, None).expect("plan");
        let binds: Vec<(String, String)> = plan
            .binds
            .iter()
            .map(|(s, t)| (s.to_string_lossy().into(), t.to_string_lossy().into()))
            .collect();
        // `/usr/lib` lies inside `/usr`, which is bound already; the missing path is skipped.
        assert_eq!(
            binds[0],
            ("/usr".into(), "/tmp/mathrl-sandbox-x/usr".into())
        );
        assert!(!binds
            .iter()
            .any(|(s, _)| s.starts_with("/does") || s == "/usr/lib"));
        let dirs = strings(&plan.dirs);
        let staged_work = "/tmp/mathrl-sandbox-x/tmp/mathrl-sandbox-x".to_string();
        assert!(dirs.contains(&staged_work), "{dirs:?}");
        // Parents come before their children.
        let tmp = dirs.iter().position(|d| d == "/tmp/mathrl-sandbox-x/tmp");
        let deep = dirs.iter().position(|d| *d == staged_work);
        assert!(tmp < deep);
    }

    #[test]
    fn a_private_directory_is_reachable_once_exposed_in_the_view() {
        let base = tempfile::tempdir().expect("temporary directory");
        let private = base.path().join("private");
        let inner = private.join("inner");
        std::fs::create_dir_all(&inner).expect("create dirs");
        let mode = |path: &Path, mode| {
            std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
                .expect("chmod")
        };
        mode(&private, 0o700);
        mode(&inner, 0o755);
        let inner = inner.canonicalize().expect("canonical");
        let target = inner.join("python");
        assert!(reachable_in_view(&target, std::slice::from_ref(&inner)));
        // Exposing the private directory itself keeps its mode: not reachable.
        let private = private.canonicalize().expect("canonical");
        assert!(!reachable_in_view(&target, std::slice::from_ref(&private)));
    }
}
