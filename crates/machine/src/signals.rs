//! Host signals: SIGTERM, SIGINT and SIGHUP end the VM cleanly through a signalfd served by the
//! event loop; SIGPIPE is ignored so a vanished client is just an error on its socket.

use std::os::fd::{FromRawFd, OwnedFd};

const EXIT_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn exit_sigset() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data and sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in EXIT_SIGNALS {
        // SAFETY: `set` is valid and `s` a valid signal number.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}

/// Blocks the exit signals in the calling thread (and so in every thread it spawns later) and
/// ignores SIGPIPE. Call first thing in `main`.
pub fn block_exit_signals() {
    let set = exit_sigset();
    // SAFETY: `set` is a valid sigset; a null old set is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    // SAFETY: ignoring SIGPIPE has no memory-safety implications.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// A signalfd for the exit signals, or None if the kernel refuses one.
pub fn exit_signalfd() -> Option<OwnedFd> {
    let set = exit_sigset();
    // SAFETY: `set` is valid; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        log::error!("signalfd: {}", std::io::Error::last_os_error());
        return None;
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal number from the signalfd.
pub fn read_signal(fd: &OwnedFd) -> Option<i32> {
    use std::os::fd::AsRawFd;
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads at most `size` bytes into `info`.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut _ as *mut libc::c_void,
            size,
        )
    };
    (n as usize == size).then_some(info.ssi_signo as i32)
}
