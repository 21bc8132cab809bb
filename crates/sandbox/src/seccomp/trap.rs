//! The SIGSYS handler: a system call outside the thread's allow-list (SECCOMP_RET_TRAP) ends the
//! VMM with a log line naming the call's number and the thread, never silently. Only
//! async-signal-safe work: raw `write(2)`, the last-resort clean-ups, `_exit(2)`.

use super::ThreadKind;
use crate::stackbuf::StackBuf;
use std::cell::Cell;

/// The exit status after a seccomp violation: 128 + SIGSYS, what a shell shows for a process
/// killed by SIGSYS.
pub const EXIT_CODE: i32 = 128 + libc::SIGSYS;

/// Offset of `si_syscall` in x86_64's `siginfo_t` for SIGSYS: si_signo, si_errno, si_code,
/// padding (16 bytes), then `_sigsys { void *_call_addr; int _syscall; unsigned _arch; }`.
const SI_SYSCALL_OFFSET: usize = 24;

thread_local! {
    /// This thread's name and kind, recorded before its filter is installed (the handler must
    /// not make system calls that the filter may forbid, such as prctl(PR_GET_NAME)).
    static NAME: Cell<[u8; 16]> = const { Cell::new([0; 16]) };
    static NAME_LEN: Cell<usize> = const { Cell::new(0) };
    static KIND: Cell<&'static str> = const { Cell::new("?") };
}

/// Records the calling thread's name and kind for the handler.
pub(super) fn name_thread(kind: ThreadKind) {
    let current = std::thread::current();
    let name = current.name().unwrap_or(kind.name()).as_bytes();
    let mut buf = [0u8; 16];
    let n = name.len().min(buf.len());
    buf[..n].copy_from_slice(&name[..n]);
    NAME.with(|c| c.set(buf));
    NAME_LEN.with(|c| c.set(n));
    KIND.with(|c| c.set(kind.name()));
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes from a valid buffer of `bytes.len()` bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// The log line for a forbidden call `nr` on this thread, in the logger's format.
fn message(nr: i64) -> StackBuf<320> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let name = NAME.with(Cell::get);
    let len = NAME_LEN.with(Cell::get);
    let mut line = StackBuf::new();
    line.push_timestamp(ts.tv_sec, (ts.tv_nsec / 1000) as u32)
        .push_str(" ERROR [")
        .push(&name[..len])
        .push_str("] seccomp: forbidden system call ")
        .push_signed(nr)
        .push_str(" on thread ")
        .push(&name[..len])
        .push_str(" (")
        .push_str(KIND.with(Cell::get))
        .push_str(" filter); stopping the VMM (-disable-seccomp turns filtering off)\n");
    line
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands the handler a valid siginfo_t; for SIGSYS it holds `_sigsys`,
    // whose `_syscall` int sits at SI_SYSCALL_OFFSET.
    let nr = unsafe { *((info as *const u8).add(SI_SYSCALL_OFFSET) as *const i32) };
    // Terminal first: a raw terminal would show the message without carriage returns.
    crate::last_resort::run();
    let line = message(i64::from(nr));
    let log_fd = crate::logger::raw_fd();
    write_all(log_fd, line.as_bytes());
    if log_fd != 2 {
        let mut short = StackBuf::<320>::new();
        short
            .push_str("stratovirt: seccomp: forbidden system call ")
            .push_signed(i64::from(nr))
            .push_str(" on thread ")
            .push(&NAME.with(Cell::get)[..NAME_LEN.with(Cell::get)])
            .push_str("\n");
        write_all(2, short.as_bytes());
    }
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(EXIT_CODE) };
}

/// Installs the process-wide SIGSYS handler.
pub(super) fn install_handler() -> std::io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = on_sigsys as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO;
    // SAFETY: `act.sa_mask` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: `act` is fully initialised and the handler is async-signal-safe.
    if unsafe { libc::sigaction(libc::SIGSYS, &act, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
