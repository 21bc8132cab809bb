//! Who holds a path the VMM is about to create (a QMP or console socket, a pidfile), so that
//! the error says the truth: "in use by running process N" for a live owner, the advice to
//! remove it only for a stale file. Removing a live VM's socket cuts its management off.
//!
//! A socket is live when it accepts a connection (the owner's pid comes from `SO_PEERCRED`);
//! a pidfile is live when its writer still holds the lock `sandbox::pidfile` takes on it, or,
//! for a pidfile without a lock, when the process it names exists.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// What the path is meant to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    Socket,
    Pidfile,
}

/// What is there now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Occupant {
    /// Nothing (not even a dangling link): free to create.
    Nothing,
    /// Left over by a process that is gone; the reason says how that is known.
    Stale(String),
    /// Held by a running process (its pid, when known).
    InUse(Option<u32>),
    /// Something that is not what the VMM would leave (a directory, a file at a socket path).
    Other(String),
    /// Nothing, but it cannot be created there: the reason names the directory.
    NoDirectory(String),
}

/// Looks at `path` for what it should become; tests substitute their own.
pub(crate) type Probe = fn(&Path, Want) -> Occupant;

/// The real [`Probe`]: the file system, following no links, and the owner when there is one.
pub(crate) fn probe_path(path: &Path, want: Want) -> Occupant {
    let meta = match path.symlink_metadata() {
        Ok(m) => m,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return directory_of(path)
        }
        Err(e) => return Occupant::Other(format!("cannot be looked at: {e}")),
    };
    let kind = meta.file_type();
    match want {
        Want::Socket if kind.is_socket() => probe_socket(path),
        Want::Socket => Occupant::Other("is not a socket".into()),
        Want::Pidfile if kind.is_file() => probe_pidfile(path),
        Want::Pidfile => Occupant::Other("is not a regular file".into()),
    }
}

/// Whether a file can be created at `path`, which does not exist: its directory must.
fn directory_of(path: &Path) -> Occupant {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let d = crate::error::quote(&dir.to_string_lossy());
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Occupant::Nothing,
        Ok(_) => Occupant::NoDirectory(format!("{d} is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Occupant::NoDirectory(format!("directory {d} does not exist"))
        }
        Err(e) => Occupant::NoDirectory(format!("directory {d} cannot be looked at: {e}")),
    }
}

fn probe_socket(path: &Path) -> Occupant {
    match UnixStream::connect(path) {
        Ok(s) => Occupant::InUse(peer_pid(&s)),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
            Occupant::Stale("nothing listens on it".into())
        }
        // A full backlog is a listener too busy to accept now.
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Occupant::InUse(None),
        Err(e) => Occupant::Other(format!("cannot be connected to: {e}")),
    }
}

/// The pid of the process at the other end of `s`.
fn peer_pid(s: &UnixStream) -> Option<u32> {
    // SAFETY: ucred is plain data; getsockopt fills at most `len` bytes of it.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket, a pointer to `cred` and its size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut libc::ucred as *mut libc::c_void,
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// Whether another open file description holds a lock on `f`.
fn is_locked(f: &File) -> bool {
    // SAFETY: flock is plain data; zeroed means SEEK_SET, the whole file.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    // SAFETY: F_OFD_GETLK writes into the flock we pass; the fd is open for the call.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short
}

/// Whether process `pid` runs (a process of another user counts; a zombie, which has ended
/// but not been reaped yet, does not).
fn process_runs(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
        return false;
    }
    // The state is the first field after the parenthesised command name.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

fn probe_pidfile(path: &Path) -> Occupant {
    let Ok(f) = File::open(path) else {
        return Occupant::Other("cannot be read".into());
    };
    let pid = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    if is_locked(&f) {
        return Occupant::InUse(pid);
    }
    match pid {
        Some(p) if process_runs(p) => Occupant::InUse(Some(p)),
        Some(p) => Occupant::Stale(format!("process {p} is not running")),
        None => Occupant::Stale("it holds no process id".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn scratch(name: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sv-occupant-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn a_listening_socket_names_its_owner_and_a_dead_one_is_stale() {
        let p = scratch("live.sock");
        assert_eq!(probe_path(&p, Want::Socket), Occupant::Nothing);
        let l = UnixListener::bind(&p).unwrap();
        assert_eq!(
            probe_path(&p, Want::Socket),
            Occupant::InUse(Some(std::process::id()))
        );
        drop(l);
        assert!(matches!(probe_path(&p, Want::Socket), Occupant::Stale(_)));
        assert!(matches!(probe_path(&p, Want::Pidfile), Occupant::Other(_)));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn pidfiles_live_by_lock_or_process() {
        let p = scratch("vm.pid");
        std::fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        assert_eq!(
            probe_path(&p, Want::Pidfile),
            Occupant::InUse(Some(std::process::id()))
        );
        // A child that has exited, first unreaped (a zombie), then reaped: not running.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        std::fs::write(&p, format!("{dead}\n")).unwrap();
        let zombie = std::time::Instant::now();
        while probe_path(&p, Want::Pidfile)
            != Occupant::Stale(format!("process {dead} is not running"))
        {
            assert!(
                zombie.elapsed().as_secs() < 10,
                "the exited child counts as running"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.wait().unwrap();
        std::fs::write(&p, format!("{dead}\n")).unwrap();
        assert_eq!(
            probe_path(&p, Want::Pidfile),
            Occupant::Stale(format!("process {dead} is not running"))
        );
        // A lock held by another open of the file: live, whatever the pid says.
        let held = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        // SAFETY: flock is plain data; zeroed means SEEK_SET, the whole file.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as libc::c_short;
        // SAFETY: F_OFD_SETLK reads the flock we pass; `held` is open.
        let r = unsafe { libc::fcntl(held.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
        assert_eq!(r, 0);
        assert_eq!(probe_path(&p, Want::Pidfile), Occupant::InUse(Some(dead)));
        drop(held);
        std::fs::write(&p, "garbage").unwrap();
        assert!(matches!(probe_path(&p, Want::Pidfile), Occupant::Stale(_)));
        assert!(matches!(probe_path(&p, Want::Socket), Occupant::Other(_)));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_path_in_a_missing_directory_says_which() {
        let dir = scratch("no-dir");
        let _ = std::fs::remove_dir(&dir);
        let p = dir.join("vm.sock");
        assert_eq!(
            probe_path(&p, Want::Socket),
            Occupant::NoDirectory(format!("directory `{}` does not exist", dir.display()))
        );
        std::fs::write(&dir, "").unwrap();
        assert_eq!(
            probe_path(&p, Want::Pidfile),
            Occupant::NoDirectory(format!("`{}` is not a directory", dir.display()))
        );
        std::fs::remove_file(&dir).unwrap();
        // A bare name is in the current directory, which exists.
        assert_eq!(
            probe_path(Path::new("sv-occupant-surely-absent.sock"), Want::Socket),
            Occupant::Nothing
        );
    }

    #[test]
    fn a_dangling_link_is_something() {
        let link = scratch("link");
        std::os::unix::fs::symlink(scratch("nowhere"), &link).unwrap();
        assert!(matches!(
            probe_path(&link, Want::Socket),
            Occupant::Other(_)
        ));
        std::fs::remove_file(&link).unwrap();
    }
}
