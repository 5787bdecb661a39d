//! The user namespace of an unprivileged run: it gives a process without root the capabilities
//! (inside the namespace only) to create the mount, network, PID and IPC namespaces and build
//! the allowlist file system.
//!
//! The child maps its own uid and gid to themselves, the one mapping an unprivileged process may
//! write for itself (after denying `setgroups`, which the kernel requires before a gid map).
//! Mapping the uid to itself rather than to 0 means the program is not root in the namespace:
//! `exec` drops the namespace's capabilities, so Python cannot mount, unshare, or raise limits.

use std::ffi::CString;
use std::io;

/// The uid and gid maps of one run, prepared in the parent.
pub(crate) struct IdMaps {
    setgroups_path: CString,
    uid_map_path: CString,
    gid_map_path: CString,
    deny: &'static [u8],
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl IdMaps {
    /// The maps of the calling process's own uid and gid.
    pub fn own() -> Self {
        // SAFETY: getuid and getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        IdMaps {
            setgroups_path: CString::from(c"/proc/self/setgroups"),
            uid_map_path: CString::from(c"/proc/self/uid_map"),
            gid_map_path: CString::from(c"/proc/self/gid_map"),
            deny: b"deny",
            uid_map: format!("{uid} {uid} 1").into_bytes(),
            gid_map: format!("{gid} {gid} 1").into_bytes(),
        }
    }

    /// Writes the maps of the calling process, which has just entered a new user namespace.
    ///
    /// # Safety
    /// Async-signal-safe (open, write, close on prepared buffers); for a forked child.
    pub unsafe fn write(&self) -> io::Result<()> {
        write_file(&self.setgroups_path, self.deny)?;
        write_file(&self.uid_map_path, &self.uid_map)?;
        write_file(&self.gid_map_path, &self.gid_map)
    }
}

unsafe fn write_file(path: &CString, bytes: &[u8]) -> io::Result<()> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
    let error = io::Error::last_os_error();
    libc::close(fd);
    if written != bytes.len() as isize {
        return Err(error);
    }
    Ok(())
}
