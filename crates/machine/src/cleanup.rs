//! Process exit: every path (guest reset, `quit`, a signal, a fatal error) runs the same
//! registered clean-ups (restore the terminal, flush disks, remove sockets and the pidfile)
//! exactly once, then exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

type Cleanup = Box<dyn FnOnce() + Send>;

static CLEANUPS: Mutex<Vec<Cleanup>> = Mutex::new(Vec::new());
static EXITING: AtomicBool = AtomicBool::new(false);

/// Registers `f` to run at exit; clean-ups run in reverse order of registration.
pub fn on_exit(f: impl FnOnce() + Send + 'static) {
    CLEANUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(f));
}

/// Runs the registered clean-ups (each once, newest first).
pub fn run_cleanups() {
    let list = std::mem::take(&mut *CLEANUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for f in list.into_iter().rev() {
        f();
    }
}

/// True once some thread has started exiting the process.
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Claims the exit: true for the first caller only. Others must not exit on their own.
pub fn claim_exit() -> bool {
    !EXITING.swap(true, Ordering::AcqRel)
}

/// Runs the clean-ups and exits with `code`.
pub fn exit(code: i32) -> ! {
    run_cleanups();
    std::process::exit(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn cleanups_run_once_newest_first() {
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let o = order.clone();
            on_exit(move || o.lock().unwrap().push(i));
        }
        run_cleanups();
        run_cleanups();
        assert_eq!(*order.lock().unwrap(), vec![2, 1, 0]);
    }
}
