//! `-pidfile`: the VMM's pid, written atomically (a temporary file in the same directory, then
//! renamed into place without replacing anything), removed at exit if it is still ours. The
//! VMM holds an OFD write lock on it while it runs, so another start can tell a live owner
//! from a stale file (the lock goes when the process does, however it ends).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A pidfile this process wrote.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Open for the life of the process: its lock says the pid is live.
    _lock: File,
}

/// Takes the write lock that marks the pidfile live.
fn lock(f: &File) -> io::Result<()> {
    // SAFETY: flock is plain data; zeroed means SEEK_SET, the whole file.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    // SAFETY: F_OFD_SETLK reads the flock we pass; `f` is open for the call.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &fl) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Moves `from` to `to` unless `to` exists: renameat2(RENAME_NOREPLACE), or link + unlink on
/// file systems without it.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    // SAFETY: both paths are valid C strings.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
        return Err(e);
    }
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

impl PidFile {
    /// Writes this process's pid to `path`, which must not exist.
    pub fn create(path: &Path) -> io::Result<PidFile> {
        let pid = std::process::id();
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(".{}.{pid}.tmp", name.to_string_lossy()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&tmp)?;
            writeln!(f, "{pid}")?;
            f.sync_all()?;
            if let Err(e) = lock(&f) {
                // A file system without locks: the pid alone tells a live owner.
                log::warn!("cannot lock pidfile {}: {e}", path.display());
            }
            let meta = f.metadata()?;
            rename_noreplace(&tmp, path)?;
            Ok(PidFile {
                path: path.to_path_buf(),
                dev: meta.dev(),
                ino: meta.ino(),
                _lock: f,
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(|e: io::Error| {
            let why = if e.kind() == io::ErrorKind::AlreadyExists {
                "it already exists".to_string()
            } else {
                e.to_string()
            };
            io::Error::new(
                e.kind(),
                format!("cannot write pidfile {}: {why}", path.display()),
            )
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the file if it is still the one written by [`create`](Self::create).
    pub fn remove(&self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    log::warn!("cannot remove pidfile {}: {e}", self.path.display());
                }
            }
            _ => log::warn!(
                "pidfile {} was replaced or removed by someone else; left alone",
                self.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sv-pidfile-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn writes_pid_and_removes_it() {
        let d = scratch("write");
        let p = d.join("vm.pid");
        let f = PidFile::create(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{}\n", std::process::id())
        );
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
        f.remove();
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_pidfile_is_locked_while_its_writer_lives() {
        let d = scratch("lock");
        let p = d.join("vm.pid");
        let f = PidFile::create(&p).unwrap();
        let other = File::open(&p).unwrap();
        // SAFETY: flock is plain data; zeroed means SEEK_SET, the whole file.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        // SAFETY: F_OFD_GETLK writes into `fl`; `other` is open.
        let r = unsafe { libc::fcntl(other.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
        assert_eq!(r, 0);
        assert_eq!(
            fl.l_type,
            libc::F_WRLCK as libc::c_short,
            "held by the writer"
        );
        f.remove();
        drop(f);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn refuses_an_existing_file_and_leaves_it() {
        let d = scratch("exists");
        let p = d.join("vm.pid");
        std::fs::write(&p, "someone else's\n").unwrap();
        let e = PidFile::create(&p).unwrap_err();
        assert!(e.to_string().contains("already exists"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "someone else's\n");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn leaves_a_replaced_file_alone() {
        let d = scratch("replaced");
        let p = d.join("vm.pid");
        let f = PidFile::create(&p).unwrap();
        // Replaced while the original still exists, so the inode differs.
        let other = d.join("other");
        std::fs::write(&other, "another VMM\n").unwrap();
        std::fs::rename(&other, &p).unwrap();
        f.remove();
        assert!(p.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let e = PidFile::create(Path::new("/nonexistent-dir-sv/vm.pid")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-dir-sv/vm.pid"), "{e}");
    }
}
