//! Waits the device tests share: on an eventfd, on a condition, and for worker threads.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

/// How long a test waits for something the device does on another thread.
pub(crate) const SECOND: Duration = Duration::from_secs(5);

/// Waits up to `timeout` for `evt` to be signalled and reads its count.
pub(crate) fn wait(evt: &EventFd, timeout: Duration) -> Option<u64> {
    let mut fds = [libc::pollfd {
        fd: evt.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: `fds` is a valid array of one pollfd for the duration of the call.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
    if r == 1 {
        evt.read().ok()
    } else {
        None
    }
}

/// Waits until `f` holds, for up to five seconds.
pub(crate) fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + SECOND;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Names of this process's threads.
pub(crate) fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .map(|s| s.trim().to_string())
        .collect()
}
