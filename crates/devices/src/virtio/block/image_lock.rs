//! Advisory locks on disk images, as QEMU takes them: shared for a read-only disk, exclusive
//! for a writable one, over the whole file. They are open file description (OFD) locks: held
//! as long as the image is open (across `fork`, unlike process-owned `F_SETLK` locks, which
//! the daemon's fork would drop), released when it is closed, and they conflict with any other
//! open of the image, in another VMM (QEMU included) or in this one.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Whether a lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Yes,
    /// The file system has no locks (some network file systems): opened without one.
    Unsupported,
}

/// Locks all of `file`: shared when `read_only`, else exclusive. `Err` with
/// `ErrorKind::WouldBlock` when another open of the image holds a conflicting lock.
pub fn lock_image(file: &File, read_only: bool) -> io::Result<Locked> {
    // SAFETY: flock is plain data; zeroed is a valid value (SEEK_SET, start 0, length 0 = all).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = if read_only {
        libc::F_RDLCK
    } else {
        libc::F_WRLCK
    } as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: F_OFD_SETLK reads the flock struct we pass and owns nothing; the fd stays
        // open for the call (owned by `file`).
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        if r == 0 {
            return Ok(Locked::Yes);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) | Some(libc::EACCES) => {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, e))
            }
            Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) => {
                return Ok(Locked::Unsupported)
            }
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use vmm_sys_util::tempfile::TempFile;

    fn open(path: &std::path::Path, write: bool) -> File {
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .unwrap()
    }

    #[test]
    fn readers_share_and_a_writer_excludes() {
        let t = TempFile::new_with_prefix("/tmp/sv-image-lock").unwrap();
        let p = t.as_path();
        let (r1, r2) = (open(p, false), open(p, false));
        assert_eq!(lock_image(&r1, true).unwrap(), Locked::Yes);
        assert_eq!(lock_image(&r2, true).unwrap(), Locked::Yes, "two readers");
        let w = open(p, true);
        let e = lock_image(&w, false).unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::WouldBlock,
            "a writer beside readers"
        );
        drop((r1, r2));
        assert_eq!(
            lock_image(&w, false).unwrap(),
            Locked::Yes,
            "closing releases"
        );
        let (w2, r3) = (open(p, true), open(p, false));
        assert_eq!(
            lock_image(&w2, false).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert_eq!(
            lock_image(&r3, true).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
