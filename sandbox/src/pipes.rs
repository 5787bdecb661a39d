//! Feeding a sandboxed program its code on stdin and reading its stdout, stderr and report pipe
//! in one `poll` loop, so that no read blocks past the deadline and no stream buffers more than
//! its cap (a program printing forever is stopped as soon as its output passes the cap).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout};
use std::time::Instant;

/// Why reading stopped before the program closed its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The wall-clock deadline passed.
    Deadline,
    /// A stream passed its cap.
    OutputLimit,
}

/// Index of each read stream in [`Exchange`]'s arrays.
pub(crate) const STDOUT: usize = 0;
pub(crate) const STDERR: usize = 1;
pub(crate) const REPORT: usize = 2;

const READ_CHUNK: usize = 64 * 1024;

/// The parent's ends of a running program's pipes.
pub(crate) struct Exchange {
    stdin: Option<ChildStdin>,
    input_written: usize,
    /// stdout, stderr and the report pipe; `None` once at end of file.
    readers: [Option<OwnedFd>; 3],
    /// What was read from each, up to its cap.
    pub captured: [Vec<u8>; 3],
    caps: [usize; 3],
}

impl Exchange {
    pub fn new(
        stdin: ChildStdin,
        stdout: ChildStdout,
        stderr: ChildStderr,
        report: OwnedFd,
        caps: [usize; 3],
    ) -> io::Result<Self> {
        set_nonblocking(stdin.as_raw_fd())?;
        Ok(Exchange {
            stdin: Some(stdin),
            input_written: 0,
            readers: [Some(stdout.into()), Some(stderr.into()), Some(report)],
            captured: [Vec::new(), Vec::new(), Vec::new()],
            caps,
        })
    }

    /// Writes `input` to stdin (then closes it) and reads until every stream reaches end of file
    /// (`None`), the deadline passes, or a stream passes its cap.
    pub fn run(&mut self, input: &[u8], deadline: Instant) -> io::Result<Option<Stop>> {
        if input.is_empty() {
            self.stdin = None;
        }
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            if self.readers.iter().all(Option::is_none) {
                return Ok(None);
            }
            let Some(timeout_ms) = remaining_ms(deadline) else {
                return Ok(Some(Stop::Deadline));
            };
            let (mut fds, owners) = self.poll_set(true);
            if !poll(&mut fds, timeout_ms)? {
                continue;
            }
            for (fd, owner) in fds.iter().zip(owners) {
                if fd.revents == 0 {
                    continue;
                }
                match owner {
                    Owner::Stdin => self.write_input(input),
                    Owner::Reader(index) => {
                        if self.read_into(index, &mut buffer)? {
                            return Ok(Some(Stop::OutputLimit));
                        }
                    }
                }
            }
        }
    }

    /// Reads and discards until every stream reaches end of file or `until` passes: once the
    /// program was killed, end of file on all its pipes means no process holds them any more.
    pub fn drain(&mut self, until: Instant) -> io::Result<()> {
        self.stdin = None;
        let mut buffer = vec![0u8; READ_CHUNK];
        while self.readers.iter().any(Option::is_some) {
            let Some(timeout_ms) = remaining_ms(until) else {
                return Ok(());
            };
            let (mut fds, owners) = self.poll_set(false);
            if !poll(&mut fds, timeout_ms)? {
                continue;
            }
            for (fd, owner) in fds.iter().zip(owners) {
                if let (true, Owner::Reader(index)) = (fd.revents != 0, owner) {
                    match read(self.readers[index].as_ref(), &mut buffer) {
                        Ok(0) | Err(_) => self.readers[index] = None,
                        Ok(_) => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn poll_set(&self, with_stdin: bool) -> (Vec<libc::pollfd>, Vec<Owner>) {
        let mut fds = Vec::with_capacity(4);
        let mut owners = Vec::with_capacity(4);
        for (index, reader) in self.readers.iter().enumerate() {
            if let Some(fd) = reader {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push(Owner::Reader(index));
            }
        }
        if let (true, Some(stdin)) = (with_stdin, &self.stdin) {
            fds.push(libc::pollfd {
                fd: stdin.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            });
            owners.push(Owner::Stdin);
        }
        (fds, owners)
    }

    /// Reads one chunk of stream `index`; true when the stream passed its cap.
    fn read_into(&mut self, index: usize, buffer: &mut [u8]) -> io::Result<bool> {
        match read(self.readers[index].as_ref(), buffer) {
            Ok(0) => self.readers[index] = None,
            Ok(count) => {
                let kept = &mut self.captured[index];
                let room = self.caps[index].saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..count.min(room)]);
                if count > room {
                    return Ok(true);
                }
            }
            Err(error) if is_transient(&error) => {}
            Err(error) => return Err(error),
        }
        Ok(false)
    }

    fn write_input(&mut self, input: &[u8]) {
        let Some(stdin) = &self.stdin else { return };
        let rest = &input[self.input_written..];
        // SAFETY: writes from a live slice to a descriptor this struct owns.
        let written = unsafe { libc::write(stdin.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
        if written >= 0 {
            self.input_written += written as usize;
            if self.input_written == input.len() {
                self.stdin = None;
            }
        } else if !is_transient(&io::Error::last_os_error()) {
            // The program closed stdin or died; what it reads is its business.
            self.stdin = None;
        }
    }
}

/// Which pipe a `pollfd` entry watches.
#[derive(Debug, Clone, Copy)]
enum Owner {
    Stdin,
    Reader(usize),
}

fn remaining_ms(deadline: Instant) -> Option<libc::c_int> {
    let left = deadline.checked_duration_since(Instant::now())?;
    if left.is_zero() {
        return None;
    }
    // Rounded up, so the loop does not spin through the last partial millisecond.
    Some(
        left.as_micros()
            .div_ceil(1000)
            .min(libc::c_int::MAX as u128) as libc::c_int,
    )
}

/// Waits on `fds`; false on timeout or interruption.
fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<bool> {
    // SAFETY: `fds` is a valid, exclusively borrowed array of `pollfd`.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return if is_transient(&error) {
            Ok(false)
        } else {
            Err(error)
        };
    }
    Ok(ready > 0)
}

fn read(fd: Option<&OwnedFd>, buffer: &mut [u8]) -> io::Result<usize> {
    let Some(fd) = fd else { return Ok(0) };
    // SAFETY: reads into a live, exclusively borrowed buffer from a descriptor we own.
    let count = unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if count < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(count as usize)
    }
}

fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
