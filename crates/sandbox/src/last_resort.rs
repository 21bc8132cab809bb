//! Clean-ups for the exits that cannot take the normal path (`machine::cleanup`): the SIGSYS
//! handler of a seccomp violation, the handler of a fatal fault, and a panic. They only use
//! async-signal-safe system calls (`unlink`, `tcsetattr`), which every thread's seccomp filter
//! allows: remove the pidfile and the sockets, put the terminal back.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

#[derive(Clone)]
enum Action {
    Unlink(CString),
    Terminal { fd: i32, attrs: libc::termios },
}

/// What registration builds; a copy is published for [`run`].
static REGISTERED: Mutex<Vec<Action>> = Mutex::new(Vec::new());
/// The latest published copy (leaked: a handful of small lists per process).
static PUBLISHED: AtomicPtr<Vec<Action>> = AtomicPtr::new(std::ptr::null_mut());
static RAN: AtomicBool = AtomicBool::new(false);

fn register(action: Action) {
    let mut list = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    list.push(action);
    let copy = Box::into_raw(Box::new(list.clone()));
    PUBLISHED.store(copy, Ordering::Release);
}

/// Remove `path` on a last-resort exit (the pidfile, a socket this process created).
pub fn unlink_on_abort(path: &Path) {
    if let Ok(c) = CString::new(path.as_os_str().as_bytes()) {
        register(Action::Unlink(c));
    }
}

/// Put terminal `fd` back to `attrs` on a last-resort exit.
pub fn restore_terminal_on_abort(fd: i32, attrs: libc::termios) {
    register(Action::Terminal { fd, attrs });
}

/// Runs the registered clean-ups, newest first, once per process. Async-signal-safe.
pub fn run() {
    if RAN.swap(true, Ordering::AcqRel) {
        return;
    }
    let list = PUBLISHED.load(Ordering::Acquire);
    if list.is_null() {
        return;
    }
    // SAFETY: published lists are leaked, never freed or changed after publication.
    let list = unsafe { &*list };
    for action in list.iter().rev() {
        match action {
            Action::Unlink(path) => {
                // SAFETY: `path` is a valid NUL-terminated string.
                unsafe { libc::unlink(path.as_ptr()) };
            }
            Action::Terminal { fd, attrs } => {
                // SAFETY: `attrs` is a valid termios read earlier from this terminal.
                unsafe { libc::tcsetattr(*fd, libc::TCSANOW, attrs) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlinks_registered_paths_once() {
        let dir = std::env::temp_dir().join(format!("sv-last-resort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.pid");
        let b = dir.join("b.sock");
        std::fs::write(&a, "1").unwrap();
        std::fs::write(&b, "2").unwrap();
        // In a child: the registry is process-wide and runs once.
        let (code, out) = crate::test_util::in_child(|| {
            unlink_on_abort(&a);
            unlink_on_abort(&b);
            run();
            assert!(!a.exists() && !b.exists());
            std::fs::write(&a, "again").unwrap();
            run();
            assert!(a.exists(), "runs once");
        });
        assert_eq!(code, 0, "{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
