//! `-daemonize`: the process forks (before any thread exists), the child starts a new session
//! and forks again, and the grandchild (the daemon) runs the VMM with its standard streams on
//! `/dev/null` and its working directory at `/`. The original process waits on a pipe: the
//! daemon writes `ok` once the VM is built and QMP accepts connections ([`notify_ready`]), or
//! the reason it could not start ([`notify_failure`]); the original process exits 0 on `ok`,
//! otherwise prints the reason on its stderr and exits 1.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The daemon's end of the report pipe; -1 when there is none (not a daemon, or reported).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);

/// What the daemon writes when it is ready.
const READY: &[u8] = b"ok";

fn last_error<T>(what: &str) -> io::Result<T> {
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Detaches from the terminal and the parent. Returns in the daemon only; the calling process
/// waits for the daemon's report and exits. Must run before any thread is created.
pub fn daemonize() -> io::Result<()> {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return last_error("daemonize: pipe");
    }
    // SAFETY: both descriptors are new and owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded (the caller's contract), so the child may run
    // arbitrary code.
    match unsafe { libc::fork() } {
        -1 => last_error("daemonize: fork"),
        0 => {
            drop(read_end);
            become_daemon(write_end)
        }
        child => {
            drop(write_end);
            wait_for_daemon(read_end, child)
        }
    }
}

/// In the first child: new session, second fork, then the daemon's environment.
fn become_daemon(report: OwnedFd) -> io::Result<()> {
    let fail = |what: &str| -> ! {
        let e = io::Error::last_os_error();
        write_report(
            report.as_raw_fd(),
            format!("daemonize: {what}: {e}").as_bytes(),
        );
        // SAFETY: _exit leaves this intermediate process without running anything else.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: setsid has no memory-safety preconditions.
    if unsafe { libc::setsid() } < 0 {
        fail("setsid");
    }
    // SAFETY: still single-threaded.
    match unsafe { libc::fork() } {
        -1 => fail("fork"),
        0 => {}
        // SAFETY: the session leader's job is done; the daemon carries on.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: the path is a valid C string.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        fail("chdir /");
    }
    // SAFETY: the path is a valid C string.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if null < 0 {
        fail("open /dev/null");
    }
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        if unsafe { libc::dup2(null, fd) } < 0 {
            fail("redirect standard streams to /dev/null");
        }
    }
    // SAFETY: `null` is ours and no longer needed (0, 1 and 2 are copies).
    unsafe { libc::close(null) };
    // The descriptor stays open until the daemon reports.
    let fd = report.as_raw_fd();
    std::mem::forget(report);
    REPORT_FD.store(fd, Ordering::Release);
    Ok(())
}

/// In the original process: reaps the first child, waits for the daemon's report and exits.
fn wait_for_daemon(report: OwnedFd, child: libc::pid_t) -> ! {
    // Ctrl-C and friends work again while the parent waits.
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t and the signals are valid.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid int.
    while unsafe { libc::waitpid(child, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    let mut text = Vec::new();
    let mut file = std::fs::File::from(report);
    let read = io::Read::read_to_end(&mut file, &mut text);
    if read.is_ok() && text == READY {
        std::process::exit(0);
    }
    let reason = String::from_utf8_lossy(&text);
    let reason = reason.trim();
    if reason.is_empty() {
        eprintln!("stratovirt: the daemon exited before it was ready (see its log, -D)");
    } else {
        eprintln!("stratovirt: {reason}");
    }
    std::process::exit(1)
}

fn write_report(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer of `bytes.len()` bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

fn report(bytes: &[u8]) {
    let fd = REPORT_FD.swap(-1, Ordering::AcqRel);
    if fd >= 0 {
        write_report(fd, bytes);
        // SAFETY: `fd` was the report pipe, owned by this module and closed once.
        unsafe { libc::close(fd) };
    }
}

/// Tells the waiting parent that the VMM is up: it exits 0. No-op when not a daemon.
pub fn notify_ready() {
    report(READY);
}

/// Tells the waiting parent why the VMM could not start: it prints `msg` and exits 1.
/// No-op when not a daemon or already reported.
pub fn notify_failure(msg: &str) {
    let msg = if msg.as_bytes() == READY {
        "ok (failure)"
    } else {
        msg
    };
    report(msg.as_bytes());
}
