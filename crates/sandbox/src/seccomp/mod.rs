//! Seccomp: one allow-list per thread kind, compiled from `seccomp/x86_64.json` into BPF at build
//! time (build.rs). Each thread installs its own filter as the first thing it does
//! ([`apply`]); the main thread right before its event loop. A call outside the list traps:
//! the SIGSYS handler logs the system call number and the thread, and ends the VMM
//! (see [`trap`]). `-disable-seccomp` leaves [`enable`] uncalled, and [`apply`] does nothing.

mod trap;

#[allow(clippy::unreadable_literal, dead_code)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/filters.rs"));
}

use seccompiler::sock_filter;
use std::sync::atomic::{AtomicBool, Ordering};

pub use trap::EXIT_CODE;

/// The kinds of threads, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// The main thread once setup is done: the event loop and the exit path.
    Main,
    /// `vcpu<N>`: KVM_RUN and the devices behind its exits; starts virtio-blk workers.
    Vcpu,
    /// `qmp`: the QMP server and disk hot-plug.
    Qmp,
    /// `blk<N>`: one virtio-blk disk's I/O.
    Blk,
    /// `net<N>`: one virtio-net NIC's frames (or its vhost-net supervision).
    Net,
    /// `console`: the virtio-console's socket and queues.
    Console,
    /// `vsock`: the virtio-vsock's connections and queues (or its vhost-vsock supervision).
    Vsock,
    /// `migrate`: writing a snapshot (QMP `migrate`) while QMP keeps answering.
    Migrate,
    /// `balloon`: the virtio-balloon's queues, releasing guest pages, its QMP events.
    Balloon,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 9] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Qmp,
        ThreadKind::Blk,
        ThreadKind::Net,
        ThreadKind::Console,
        ThreadKind::Vsock,
        ThreadKind::Migrate,
        ThreadKind::Balloon,
    ];

    /// The kind's name in the policy file.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Main => "main",
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Qmp => "qmp",
            ThreadKind::Blk => "blk",
            ThreadKind::Net => "net",
            ThreadKind::Console => "console",
            ThreadKind::Vsock => "vsock",
            ThreadKind::Migrate => "migrate",
            ThreadKind::Balloon => "balloon",
        }
    }

    /// The system calls the kind may make (some only with certain arguments), sorted.
    pub fn syscalls(self) -> &'static [&'static str] {
        match self {
            ThreadKind::Main => generated::SYSCALLS_MAIN,
            ThreadKind::Vcpu => generated::SYSCALLS_VCPU,
            ThreadKind::Qmp => generated::SYSCALLS_QMP,
            ThreadKind::Blk => generated::SYSCALLS_BLK,
            ThreadKind::Net => generated::SYSCALLS_NET,
            ThreadKind::Console => generated::SYSCALLS_CONSOLE,
            ThreadKind::Vsock => generated::SYSCALLS_VSOCK,
            ThreadKind::Migrate => generated::SYSCALLS_MIGRATE,
            ThreadKind::Balloon => generated::SYSCALLS_BALLOON,
        }
    }

    /// (allow-list, program answering some calls with an error code: may be empty).
    fn programs(self) -> (&'static [sock_filter], &'static [sock_filter]) {
        match self {
            ThreadKind::Main => (generated::ALLOW_MAIN, generated::ERRNO_MAIN),
            ThreadKind::Vcpu => (generated::ALLOW_VCPU, generated::ERRNO_VCPU),
            ThreadKind::Qmp => (generated::ALLOW_QMP, generated::ERRNO_QMP),
            ThreadKind::Blk => (generated::ALLOW_BLK, generated::ERRNO_BLK),
            ThreadKind::Net => (generated::ALLOW_NET, generated::ERRNO_NET),
            ThreadKind::Console => (generated::ALLOW_CONSOLE, generated::ERRNO_CONSOLE),
            ThreadKind::Vsock => (generated::ALLOW_VSOCK, generated::ERRNO_VSOCK),
            ThreadKind::Migrate => (generated::ALLOW_MIGRATE, generated::ERRNO_MIGRATE),
            ThreadKind::Balloon => (generated::ALLOW_BALLOON, generated::ERRNO_BALLOON),
        }
    }
}

/// The table of docs/security.md: each thread kind's system calls and BPF program size (a
/// test keeps the document equal to it; `cargo test -p sv-sandbox doc_table -- --nocapture`
/// prints it).
pub fn doc_table() -> String {
    let mut t =
        String::from("| kind | system calls | BPF instructions | allowed |\n|---|---|---|---|\n");
    for k in ThreadKind::ALL {
        let (allow, errno) = k.programs();
        t.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            k.name(),
            k.syscalls().len(),
            allow.len() + errno.len(),
            k.syscalls().join(", ")
        ));
    }
    t.push_str(&format!(
        "| all threads together | {} | | |\n",
        all_syscalls().len()
    ));
    t
}

/// Every system call some thread may make, sorted.
pub fn all_syscalls() -> Vec<&'static str> {
    let mut all: Vec<&str> = ThreadKind::ALL
        .iter()
        .flat_map(|k| k.syscalls().iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// What a call outside the lists does in this build: "trap", or "log" (built with
/// `SV_SECCOMP_MISMATCH=log` to collect missing calls from the kernel's audit log).
pub fn mismatch_action() -> &'static str {
    generated::MISMATCH
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: this kernel has no seccomp filtering ({0}); run with -disable-seccomp")]
    Unsupported(std::io::Error),
    #[error("seccomp: cannot install the SIGSYS handler: {0}")]
    Handler(std::io::Error),
    #[error("seccomp: cannot install the {kind} thread's filter: {source}")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
}

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns filtering on for the process: checks that the kernel filters, installs the SIGSYS
/// handler. Call once in `main` before any thread starts; without it [`apply`] does nothing.
pub fn enable() -> Result<(), SeccompError> {
    // SAFETY: PR_GET_SECCOMP only reads the calling thread's mode.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
        return Err(SeccompError::Unsupported(std::io::Error::last_os_error()));
    }
    trap::install_handler().map_err(SeccompError::Handler)?;
    limit_malloc_arenas();
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Caps glibc's malloc arenas. Without a cap, glibc sizes the arena count from the number of
/// CPUs the first time a thread needs more than eight arenas, by opening
/// `/sys/devices/system/cpu/online` — on a vCPU or worker thread, under a filter that (rightly)
/// has no `openat`.
fn limit_malloc_arenas() {
    /// The default limit before glibc looks at the CPUs (its `arena_test` on 64-bit hosts).
    const ARENAS: libc::c_int = 8;
    // SAFETY: mallopt only changes the allocator's tuning.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
}

/// Whether [`enable`] was called.
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Installs `kind`'s filter on the calling thread, whether or not filtering is enabled (tests
/// call it directly; the VMM calls [`apply`]).
pub fn install(kind: ThreadKind) -> Result<(), SeccompError> {
    trap::name_thread(kind);
    let (allow, errno) = kind.programs();
    let err = |source| SeccompError::Install {
        kind: kind.name(),
        source,
    };
    // The error-code program first: the allow-list need not allow seccomp(2) itself.
    if !errno.is_empty() {
        seccompiler::apply_filter(errno).map_err(err)?;
    }
    seccompiler::apply_filter(allow).map_err(err)
}

/// Installs `kind`'s filter on the calling thread when filtering is enabled. Call it first
/// thing on a new thread. A failure ends the VMM (with the last-resort clean-ups): a thread
/// must not run unfiltered when the user asked for filtering.
pub fn apply(kind: ThreadKind) {
    if !is_enabled() {
        return;
    }
    if let Err(e) = install(kind) {
        log::error!("{e}");
        eprintln!("stratovirt: {e}");
        crate::last_resort::run();
        // SAFETY: _exit ends the process without running anything else.
        unsafe { libc::_exit(1) };
    }
}

#[cfg(test)]
mod tests;
