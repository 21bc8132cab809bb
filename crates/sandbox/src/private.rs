//! Files the VMM creates for its owner only. A QMP socket drives the VM (and `blockdev-add`
//! makes the VMM, often root, open any host file for the guest), so sockets are created 0600
//! whatever the umask; to let a group in, the operator changes the socket's mode after start
//! and controls who reaches it through the socket's directory (see docs/security.md).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The mode of every socket the VMM creates.
pub const SOCKET_MODE: u32 = 0o600;

/// Binds a listening unix socket at `path`, mode 0600 from the start: the umask is narrowed
/// around `bind` (the process has one umask: call this before other threads create files),
/// then the mode is set exactly, as a stricter umask would leave it narrower still.
///
/// The socket appears at `path` only once it listens: it is bound and set up under a
/// temporary name beside `path`, then linked into place (which, unlike a rename, never
/// replaces a file that appeared there meanwhile). Clients that wait for the path to exist, as
/// Kata and the tests do, never meet a bound socket that refuses them.
pub fn bind_private_socket(path: &Path) -> io::Result<UnixListener> {
    let Some(tmp) = temporary_name(path) else {
        return bind_in_place(path);
    };
    let _ = std::fs::remove_file(&tmp);
    let listener = bind_in_place(&tmp)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(listener),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(io::Error::from_raw_os_error(libc::EADDRINUSE))
        }
        // A file system without hard links to sockets: bind in place.
        Err(_) => {
            drop(listener);
            bind_in_place(path)
        }
    }
}

/// `.<name>.<pid>.tmp` beside `path`, if that still fits in `sun_path`.
fn temporary_name(path: &Path) -> Option<PathBuf> {
    const SUN_PATH_MAX: usize = 107;
    let name = path.file_name()?.to_str()?;
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    (tmp.as_os_str().len() <= SUN_PATH_MAX).then_some(tmp)
}

fn bind_in_place(path: &Path) -> io::Result<UnixListener> {
    // SAFETY: umask only swaps the process's file mode creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask read before.
    unsafe { libc::umask(old) };
    let listener = bound?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE)) {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(listener)
}

/// A listening socket this process created, non-blocking, at a path that must not exist (a
/// stale socket included: see `config::occupant` for the advice given before start). What the
/// QMP server, the console and the userspace vsock each listen on.
#[derive(Debug)]
pub struct PrivateListener {
    listener: UnixListener,
    file: SocketFile,
}

impl PrivateListener {
    /// Listens at `path`, mode 0600; `what` names the socket in errors ("QMP socket").
    pub fn bind(path: &Path, what: &str) -> io::Result<Self> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{what} path {} already exists", path.display()),
            ));
        }
        let listener = bind_private_socket(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {what} {}: {e}", path.display()),
            )
        })?;
        let file = match SocketFile::new(path) {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        if let Err(e) = listener.set_nonblocking(true) {
            file.remove();
            return Err(e);
        }
        Ok(Self { listener, file })
    }

    /// The socket file, to remove on the exit path.
    pub fn file(&self) -> SocketFile {
        self.file.clone()
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Accepts one pending connection (non-blocking, close-on-exec); `Ok(None)` when there is
    /// none.
    pub fn accept(&self) -> io::Result<Option<OwnedFd>> {
        loop {
            // SAFETY: accept4 on our listening socket with null address pointers; it returns a
            // new descriptor or -1.
            let fd = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: `fd` was just returned by accept4 and nothing else owns it.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(None),
                // The connection went away before it was accepted, or a signal: try again.
                Some(libc::ECONNABORTED | libc::EINTR) => continue,
                _ => return Err(e),
            }
        }
    }
}

impl AsRawFd for PrivateListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// A socket file this process created, to remove on the exit path (which leaves through
/// `std::process::exit`, so destructors do not run there): [`remove`](Self::remove) unlinks it
/// only if the path still names the same file (device and inode), so a socket someone put in
/// its place after ours was removed is left alone. Clones share one removal.
#[derive(Clone, Debug)]
pub struct SocketFile {
    inner: Arc<SocketFileInner>,
}

#[derive(Debug)]
struct SocketFileInner {
    path: PathBuf,
    dev: u64,
    ino: u64,
    removed: AtomicBool,
}

impl SocketFile {
    /// Remembers the file now at `path` (just bound by this process).
    pub fn new(path: &Path) -> io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            inner: Arc::new(SocketFileInner {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
                removed: AtomicBool::new(false),
            }),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Removes the socket file if it is still the one this process created. Idempotent; safe
    /// to call from any thread.
    pub fn remove(&self) {
        if self.inner.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        let path = &self.inner.path;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.dev() == self.inner.dev && m.ino() == self.inner.ino => {
                if let Err(e) = std::fs::remove_file(path) {
                    log::warn!("failed to remove socket {}: {e}", path.display());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::Mutex;

    /// The tests that bind sockets change the process's one umask: one at a time.
    static UMASK: Mutex<()> = Mutex::new(());

    fn umask_lock() -> std::sync::MutexGuard<'static, ()> {
        UMASK.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn the_socket_is_0600_under_any_umask() {
        let _umask = umask_lock();
        // Only masks that loosen: other tests of this process create files meanwhile.
        for mask in [0o000, 0o022] {
            let p = std::env::temp_dir()
                .join(format!("sv-private-{}-{mask:o}.sock", std::process::id()));
            let _ = std::fs::remove_file(&p);
            // SAFETY: umask only swaps the process's file mode creation mask.
            let old = unsafe { libc::umask(mask) };
            let l = bind_private_socket(&p);
            // SAFETY: restores the mask read above.
            let during = unsafe { libc::umask(old) };
            assert_eq!(during, mask, "the caller's umask is given back");
            let _l = l.unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, SOCKET_MODE);
            std::fs::remove_file(&p).unwrap();
        }
    }

    #[test]
    fn the_socket_appears_listening_and_never_replaces_a_file() {
        let _umask = umask_lock();
        let dir = std::env::temp_dir().join(format!("sv-private-{}-link", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let p = dir.join("vm.sock");
        let _l = bind_private_socket(&p).unwrap();
        std::os::unix::net::UnixStream::connect(&p).unwrap();
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["vm.sock"], "no temporary name is left behind");
        let taken = dir.join("taken");
        std::fs::write(&taken, "x").unwrap();
        let e = bind_private_socket(&taken).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert_eq!(
            std::fs::read(&taken).unwrap(),
            b"x",
            "the file is left alone"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        // A path too long for a temporary name beside it is bound in place.
        let long = dir.join("s".repeat(107 - dir.as_os_str().len() - 1));
        let _l = bind_private_socket(&long).unwrap();
        std::os::unix::net::UnixStream::connect(&long).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_socket_file_is_removed_once_and_only_if_still_ours() {
        let _umask = umask_lock();
        let p = std::env::temp_dir().join(format!("sv-private-{}-guard.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let l = bind_private_socket(&p).unwrap();
        let file = SocketFile::new(&p).unwrap();
        assert_eq!(file.path(), p);
        file.clone().remove();
        assert!(!p.exists());
        // Another socket at the path afterwards is not ours to remove.
        drop(l);
        let _l2 = bind_private_socket(&p).unwrap();
        file.remove();
        assert!(p.exists());
        let other = SocketFile::new(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "").unwrap();
        other.remove();
        assert!(p.exists(), "a different file at the path is left alone");
        std::fs::remove_file(&p).unwrap();
    }
}
