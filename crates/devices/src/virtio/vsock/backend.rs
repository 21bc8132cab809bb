//! The host side of the userspace device: the listening Unix socket host programs connect to
//! (Firecracker's convention: `CONNECT <port>\n`, answered `OK <host port>\n`), and the
//! `<path>_<port>` sockets guest connections go to.

use sandbox::private::{PrivateListener, SocketFile};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The device's listening socket, created mode 0600 at a path that must not exist.
pub struct VsockSocket(PrivateListener);

impl VsockSocket {
    /// Listens on a new socket at `path`. An existing path is refused, naming it.
    pub fn bind(path: &Path) -> io::Result<Self> {
        PrivateListener::bind(path, "vsock socket").map(Self)
    }

    /// The socket file, to remove on the exit path.
    pub fn file(&self) -> SocketFile {
        self.0.file()
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub(super) fn listener_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Where a guest connection to host port `port` goes: `<path>_<port>`.
    pub fn port_path(&self, port: u32) -> PathBuf {
        let mut p: OsString = self.path().as_os_str().to_owned();
        p.push(format!("_{port}"));
        PathBuf::from(p)
    }

    /// Accepts one pending connection; `Ok(None)` when there is none.
    pub(super) fn accept(&self) -> io::Result<Option<OwnedFd>> {
        self.0.accept()
    }
}

/// Connects to the listener at `path` without waiting (non-blocking, close-on-exec). A
/// listener whose backlog is full refuses at once (EAGAIN), as a missing one does.
pub(super) fn connect(path: &Path) -> io::Result<OwnedFd> {
    let bytes = path.as_os_str().to_owned().into_vec();
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(&bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; returns a new descriptor or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes for the call.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                len as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(fd);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}
