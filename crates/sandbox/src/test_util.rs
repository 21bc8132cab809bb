//! Helpers for this crate's tests.

use std::io::Read;
use std::os::fd::FromRawFd;

/// Runs `body` in a forked child whose stderr is a pipe; returns (exit status, or minus the
/// signal that killed it; what it wrote on stderr).
pub(crate) fn in_child(body: impl FnOnce()) -> (i32, String) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only runs `body` and then _exits; glibc makes malloc usable after fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: descriptors of this (child) process.
        unsafe {
            libc::dup2(fds[1], 2);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_ok();
        // SAFETY: ends the child without running the test harness's code.
        unsafe { libc::_exit(if ok { 0 } else { 101 }) };
    }
    // SAFETY: the write end belongs to this process and is closed once.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours; File takes ownership.
    let mut r = unsafe { std::fs::File::from_raw_fd(fds[0]) };
    let mut out = String::new();
    r.read_to_string(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: waits for our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (code, out)
}
