//! The SIGSYS handler: a system call outside the thread's allow-list (SECCOMP_RET_TRAP) ends the
//! VMM with a log line naming the call's number and the thread, never silently. A fatal fault
//! (SIGSEGV, SIGBUS, SIGILL, SIGFPE) under a filter is reported the same way, as itself. Only
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

/// The log line `<timestamp> ERROR [<thread>] <what>`, in the logger's format.
fn log_line(what: &[u8]) -> StackBuf<320> {
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
        .push_str("] ")
        .push(what)
        .push_str("\n");
    line
}

/// Ends the VMM from a signal handler: the last-resort clean-ups, `what` in the log (and a
/// short `stratovirt: <short>` on stderr when the log is elsewhere), then `_exit(code)`.
fn stop(what: &[u8], short: &[u8], code: i32) -> ! {
    // Terminal first: a raw terminal would show the message without carriage returns.
    crate::last_resort::run();
    let log_fd = crate::logger::raw_fd();
    write_all(log_fd, log_line(what).as_bytes());
    if log_fd != 2 {
        let mut line = StackBuf::<320>::new();
        line.push_str("stratovirt: ").push(short).push_str("\n");
        write_all(2, line.as_bytes());
    }
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(code) }
}

/// "<what> on thread <name>"
fn on_thread(what: &mut StackBuf<200>) {
    what.push_str(" on thread ")
        .push(&NAME.with(Cell::get)[..NAME_LEN.with(Cell::get)]);
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel hands the handler a valid siginfo_t; for SIGSYS it holds `_sigsys`,
    // whose `_syscall` int sits at SI_SYSCALL_OFFSET.
    let nr = unsafe { *((info as *const u8).add(SI_SYSCALL_OFFSET) as *const i32) };
    let mut short = StackBuf::<200>::new();
    short
        .push_str("seccomp: forbidden system call ")
        .push_signed(i64::from(nr));
    on_thread(&mut short);
    let mut what = StackBuf::<200>::new();
    what.push(short.as_bytes())
        .push_str(" (")
        .push_str(KIND.with(Cell::get))
        .push_str(" filter); stopping the VMM (-disable-seccomp turns filtering off)");
    stop(what.as_bytes(), short.as_bytes(), EXIT_CODE)
}

/// The faults a handler of ours must report under a filter: Rust's own SIGSEGV/SIGBUS handler
/// (its stack-overflow check) would call sigaction(2) to fall back to the default action,
/// which no filter allows, so a crash would be reported as a forbidden system call.
const FAULTS: [(libc::c_int, &str); 4] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
];

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let name = FAULTS
        .iter()
        .find(|(s, _)| *s == sig)
        .map_or("a fault", |(_, n)| *n);
    let mut short = StackBuf::<200>::new();
    short.push_str("fatal signal ").push_str(name);
    // SAFETY: the kernel hands the handler a valid siginfo_t. A fault (si_code > 0) has the
    // faulting address in si_addr; a signal another process sent (si_code <= 0) has its pid.
    unsafe {
        if (*info).si_code > 0 {
            short
                .push_str(" at address ")
                .push_hex((*info).si_addr() as u64);
        } else {
            short
                .push_str(" sent by process ")
                .push_signed(i64::from((*info).si_pid()));
        }
    }
    on_thread(&mut short);
    let mut what = StackBuf::<200>::new();
    what.push(short.as_bytes()).push_str("; stopping the VMM");
    stop(what.as_bytes(), short.as_bytes(), 128 + sig)
}

fn set_handler(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
    flags: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: sigaction is plain data; zeroed is a valid starting value.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler as *const () as usize;
    act.sa_flags = libc::SA_SIGINFO | flags;
    // SAFETY: `act.sa_mask` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: `act` is fully initialised and the handler is async-signal-safe.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Installs the process-wide SIGSYS handler, and the handler of fatal faults (on the
/// alternate stack Rust gives each thread, so a stack overflow is reported too).
pub(super) fn install_handler() -> std::io::Result<()> {
    set_handler(libc::SIGSYS, on_sigsys, 0)?;
    for (sig, _) in FAULTS {
        set_handler(sig, on_fault, libc::SA_ONSTACK)?;
    }
    Ok(())
}
