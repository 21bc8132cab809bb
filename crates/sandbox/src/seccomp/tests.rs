use super::*;
use crate::test_util::in_child;

/// StratoVirt's microvm allow-list has 67 system calls (glibc build); each of ours is smaller.
const STRATOVIRT_MICROVM_SYSCALLS: usize = 67;

fn say(s: &str) {
    // SAFETY: writes from a valid buffer.
    unsafe { libc::write(2, s.as_ptr() as *const libc::c_void, s.len()) };
}

fn filtered(kind: ThreadKind, body: impl FnOnce()) -> (i32, String) {
    in_child(move || {
        trap::install_handler().unwrap();
        install(kind).unwrap();
        body();
    })
}

#[test]
fn a_fault_under_a_filter_is_reported_as_itself() {
    for kind in ThreadKind::ALL {
        let (code, err) = filtered(kind, || {
            say("before\n");
            // SAFETY: ud2 raises SIGILL, whose handler ends the process; it never returns.
            unsafe { std::arch::asm!("ud2") };
            say("after\n");
        });
        assert_eq!(code, 128 + libc::SIGILL, "{kind:?}: {err}");
        assert!(!err.contains("after"), "{err}");
        assert!(
            err.contains("fatal signal SIGILL at address 0x"),
            "{kind:?}: {err}"
        );
        assert!(!err.contains("forbidden system call"), "{err}");
        assert!(err.contains(" ERROR ["), "in the log's format: {err}");
    }
}

#[test]
fn a_denied_call_traps_and_names_the_call_and_thread() {
    for kind in ThreadKind::ALL {
        let (code, err) = filtered(kind, || {
            say("before\n");
            // socket(2) is on no list.
            // SAFETY: a plain system call with integer arguments.
            unsafe { libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0) };
            say("after\n");
        });
        assert_eq!(code, EXIT_CODE, "{kind:?}: {err}");
        assert!(err.starts_with("before\n"), "{err}");
        assert!(!err.contains("after"), "{err}");
        let want = format!("forbidden system call {}", libc::SYS_socket);
        assert!(err.contains(&want), "{kind:?}: {err}");
        assert!(err.contains(&format!("({} filter)", kind.name())), "{err}");
        assert!(err.contains(" ERROR ["), "in the log's format: {err}");
    }
}

#[test]
fn allowed_calls_pass() {
    for kind in ThreadKind::ALL {
        let (code, err) = filtered(kind, || {
            let v = vec![7u8; 1 << 20];
            say(&format!("alive {}\n", v.len()));
        });
        assert_eq!((code, err.as_str()), (0, "alive 1048576\n"), "{kind:?}");
    }
}

#[test]
fn any_thread_may_grow_the_main_heap() {
    // Past eight threads glibc shares its arenas, and a thread given the main arena grows it
    // with brk (a restored VM with six disk workers once died of this on its QMP thread).
    for kind in ThreadKind::ALL {
        let (code, err) = filtered(kind, || {
            // SAFETY: sbrk(0) reads the current break; growing it by a page and back only moves
            // the heap's end, which nothing in this child uses.
            let grew = unsafe {
                let top = libc::sbrk(0);
                libc::sbrk(4096) == top && libc::sbrk(-4096) != usize::MAX as *mut libc::c_void
            };
            say(if grew { "grew\n" } else { "no\n" });
        });
        assert_eq!((code, err.as_str()), (0, "grew\n"), "{kind:?}");
    }
}

#[test]
fn every_list_allows_the_exit_paths() {
    // What the SIGSYS handler, a panic and a thread's end need, on every thread.
    for kind in ThreadKind::ALL {
        for call in [
            "write",
            "clock_gettime",
            "unlink",
            "ioctl",
            "exit",
            "exit_group",
            "futex",
            "getpid",
            "tgkill",
            "rt_sigprocmask",
        ] {
            assert!(kind.syscalls().contains(&call), "{kind:?} lacks {call}");
        }
    }
}

#[test]
fn a_violation_runs_the_last_resort_clean_ups() {
    let dir = std::env::temp_dir().join(format!("sv-seccomp-lr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("vm.pid");
    std::fs::write(&pidfile, "1\n").unwrap();
    let p = pidfile.clone();
    let (code, err) = filtered(ThreadKind::Qmp, move || {
        crate::last_resort::unlink_on_abort(&p);
        // SAFETY: a plain system call with integer arguments; trapped.
        unsafe { libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) };
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(!pidfile.exists(), "the pidfile is removed: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn qmp_opens_existing_files_but_creates_none() {
    let dir = std::env::temp_dir().join(format!("sv-seccomp-open-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let existing = dir.join("disk.img");
    std::fs::write(&existing, [0u8; 512]).unwrap();
    let new = dir.join("new.img");
    let (e, n) = (existing.clone(), new.clone());
    let (code, err) = filtered(ThreadKind::Qmp, move || {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&e);
        say(&format!("open existing: {}\n", f.is_ok()));
        let _ = std::fs::File::create(&n);
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(err.starts_with("open existing: true\n"), "{err}");
    assert!(
        err.contains(&format!("forbidden system call {}", libc::SYS_openat)),
        "{err}"
    );
    assert!(!new.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ioctl_requests_are_checked() {
    // The worker may restore the terminal (TCSETS) on a last-resort exit, nothing else.
    let (code, err) = filtered(ThreadKind::Blk, || {
        // SAFETY: termios is plain data.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: TCGETS writes a termios into `t`.
        unsafe { libc::ioctl(0, libc::TCGETS, &mut t) };
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(
        err.contains(&format!("forbidden system call {}", libc::SYS_ioctl)),
        "{err}"
    );
}

#[test]
fn the_console_accepts_clients_only_non_blocking_and_close_on_exec() {
    use std::os::fd::AsRawFd;
    let path = std::env::temp_dir().join(format!("sv-seccomp-con-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Two connections wait in the backlog for the child.
    let _a = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let _b = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let fd = listener.as_raw_fd();
    let (code, err) = filtered(ThreadKind::Console, move || {
        let accept = |flags| {
            // SAFETY: accept4 on a listening socket with null address pointers.
            unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) }
        };
        let c = accept(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
        say(&format!("accepted {}\n", c >= 0));
        accept(0);
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(err.starts_with("accepted true\n"), "{err}");
    let want = format!("forbidden system call {}", libc::SYS_accept4);
    assert!(err.contains(&want), "{err}");
}

#[test]
fn the_vsock_thread_opens_only_unix_streams() {
    let (code, err) = filtered(ThreadKind::Vsock, || {
        let open = |domain, ty| {
            // SAFETY: socket(2) with constant arguments; the descriptor is left to the exit.
            unsafe { libc::socket(domain, ty, 0) }
        };
        let unix = open(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        );
        say(&format!("unix {}\n", unix >= 0));
        open(libc::AF_INET, libc::SOCK_STREAM);
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(err.starts_with("unix true\n"), "{err}");
    assert!(
        err.contains(&format!("forbidden system call {}", libc::SYS_socket)),
        "{err}"
    );
}

#[test]
fn executable_mappings_are_refused() {
    for kind in ThreadKind::ALL {
        let (code, err) = filtered(kind, || {
            // SAFETY: an anonymous mapping; never used.
            unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
        });
        assert_eq!(code, EXIT_CODE, "{kind:?}: {err}");
        assert!(
            err.contains(&format!("forbidden system call {}", libc::SYS_mmap)),
            "{err}"
        );
    }
}

#[test]
fn vcpu_threads_start_workers_but_cannot_fork() {
    let (code, err) = filtered(ThreadKind::Vcpu, || {
        let worker = std::thread::Builder::new()
            .name("blk0".into())
            .spawn(|| {
                install(ThreadKind::Blk).unwrap();
                say("worker filtered\n");
            })
            .unwrap();
        worker.join().unwrap();
        say("joined\n");
        // SAFETY: fork is denied by the filter; the child never exists.
        unsafe { libc::fork() };
        say("forked\n");
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(err.starts_with("worker filtered\njoined\n"), "{err}");
    assert!(!err.contains("forked"), "{err}");
    assert!(
        err.contains(&format!("forbidden system call {}", libc::SYS_clone)),
        "{err}"
    );
}

#[test]
fn worker_filter_is_narrower_than_the_vcpu_filter() {
    let (code, err) = filtered(ThreadKind::Vcpu, || {
        let worker = std::thread::spawn(|| {
            install(ThreadKind::Blk).unwrap();
            // KVM_RUN on stdin: allowed for vCPUs, not for a worker.
            // SAFETY: the ioctl is trapped before it reaches the kernel.
            unsafe { libc::ioctl(0, 0xae80) };
        });
        let _ = worker.join();
    });
    assert_eq!(code, EXIT_CODE, "{err}");
    assert!(err.contains("(blk filter)"), "{err}");
}

#[test]
fn lists_are_smaller_than_stratovirts() {
    for kind in ThreadKind::ALL {
        let n = kind.syscalls().len();
        assert!(n > 5 && n < STRATOVIRT_MICROVM_SYSCALLS, "{kind:?}: {n}");
        let (allow, _) = kind.programs();
        assert!(!allow.is_empty());
    }
    let all = all_syscalls();
    assert!(
        all.len() < STRATOVIRT_MICROVM_SYSCALLS,
        "{}: {all:?}",
        all.len()
    );
    assert_eq!(mismatch_action(), "trap", "release builds trap");
}

fn constant(name: &str) -> u64 {
    generated::CONSTANTS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no constant {name}"))
        .1
}

/// `_IOC` for x86_64.
fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}

#[test]
fn policy_constants_match_the_kernel_headers() {
    use kvm_bindings::{kvm_mp_state, kvm_regs, kvm_translation};
    use std::mem::size_of;
    assert_eq!(constant("KVM_RUN"), ioc(0, 0x80, 0));
    assert_eq!(
        constant("KVM_GET_REGS"),
        ioc(2, 0x81, size_of::<kvm_regs>())
    );
    assert_eq!(
        constant("KVM_TRANSLATE"),
        ioc(3, 0x85, size_of::<kvm_translation>())
    );
    assert_eq!(
        constant("KVM_GET_MP_STATE"),
        ioc(2, 0x98, size_of::<kvm_mp_state>())
    );
    {
        use vhost::vhost_kern::vhost_binding::*;
        for (name, number) in [
            ("VHOST_GET_FEATURES", VHOST_GET_FEATURES()),
            ("VHOST_SET_FEATURES", VHOST_SET_FEATURES()),
            ("VHOST_SET_OWNER", VHOST_SET_OWNER()),
            ("VHOST_RESET_OWNER", VHOST_RESET_OWNER()),
            ("VHOST_SET_MEM_TABLE", VHOST_SET_MEM_TABLE()),
            ("VHOST_SET_VRING_NUM", VHOST_SET_VRING_NUM()),
            ("VHOST_SET_VRING_ADDR", VHOST_SET_VRING_ADDR()),
            ("VHOST_SET_VRING_BASE", VHOST_SET_VRING_BASE()),
            ("VHOST_GET_VRING_BASE", VHOST_GET_VRING_BASE()),
            ("VHOST_SET_VRING_KICK", VHOST_SET_VRING_KICK()),
            ("VHOST_SET_VRING_CALL", VHOST_SET_VRING_CALL()),
            ("VHOST_SET_VRING_ERR", VHOST_SET_VRING_ERR()),
            ("VHOST_NET_SET_BACKEND", VHOST_NET_SET_BACKEND()),
            ("VHOST_VSOCK_SET_GUEST_CID", VHOST_VSOCK_SET_GUEST_CID()),
            ("VHOST_VSOCK_SET_RUNNING", VHOST_VSOCK_SET_RUNNING()),
        ] {
            assert_eq!(constant(name), number, "{name}");
        }
    }
    // linux/if_tun.h: _IOW('T', 202, int) and friends.
    assert_eq!(constant("TUNSETIFF"), 0x4004_54ca);
    assert_eq!(constant("TUNSETOFFLOAD"), 0x4004_54d0);
    assert_eq!(constant("TUNGETIFF"), 0x8004_54d2);
    assert_eq!(constant("TUNSETVNETHDRSZ"), 0x4004_54d8);
    assert_eq!(constant("TUNSETSNDBUF"), 0x4004_54d4);
    assert_eq!(constant("F_GETFD"), libc::F_GETFD as u64);
    assert_eq!(constant("F_SETFD"), libc::F_SETFD as u64);
    {
        use kvm_bindings::*;
        let reads = [
            ("KVM_GET_SREGS", 2, 0x83, size_of::<kvm_sregs>()),
            ("KVM_GET_MSRS", 3, 0x88, size_of::<kvm_msrs>()),
            ("KVM_GET_LAPIC", 2, 0x8e, size_of::<kvm_lapic_state>()),
            ("KVM_GET_VCPU_EVENTS", 2, 0x9f, size_of::<kvm_vcpu_events>()),
            ("KVM_GET_DEBUGREGS", 2, 0xa1, size_of::<kvm_debugregs>()),
            ("KVM_GET_XSAVE", 2, 0xa4, size_of::<kvm_xsave>()),
            ("KVM_GET_XCRS", 2, 0xa6, size_of::<kvm_xcrs>()),
            ("KVM_GET_IRQCHIP", 3, 0x62, size_of::<kvm_irqchip>()),
            ("KVM_GET_PIT2", 2, 0x9f, size_of::<kvm_pit_state2>()),
            ("KVM_GET_CLOCK", 2, 0x7c, size_of::<kvm_clock_data>()),
        ];
        for (name, dir, nr, size) in reads {
            assert_eq!(constant(name), ioc(dir, nr, size), "{name}");
        }
    }
    assert_eq!(constant("TCGETS"), libc::TCGETS);
    assert_eq!(constant("TCSETS"), libc::TCSETS);
    assert_eq!(constant("FIONBIO"), libc::FIONBIO);
    assert_eq!(constant("FIOCLEX"), libc::FIOCLEX);
    assert_eq!(constant("F_DUPFD_CLOEXEC"), libc::F_DUPFD_CLOEXEC as u64);
    assert_eq!(constant("F_OFD_SETLK"), libc::F_OFD_SETLK as u64);
    assert_eq!(constant("F_GETFL"), libc::F_GETFL as u64);
    assert_eq!(constant("F_SETFL"), libc::F_SETFL as u64);
    assert_eq!(
        constant("FUTEX_WAIT_BITSET"),
        libc::FUTEX_WAIT_BITSET as u64
    );
    assert_eq!(
        constant("FUTEX_PRIVATE_FLAG"),
        libc::FUTEX_PRIVATE_FLAG as u64
    );
    assert_eq!(
        constant("FUTEX_CLOCK_REALTIME"),
        libc::FUTEX_CLOCK_REALTIME as u64
    );
    assert_eq!(constant("PR_SET_NAME"), libc::PR_SET_NAME as u64);
    assert_eq!(
        constant("PR_SET_NO_NEW_PRIVS"),
        libc::PR_SET_NO_NEW_PRIVS as u64
    );
    assert_eq!(constant("MADV_DONTNEED"), libc::MADV_DONTNEED as u64);
    assert_eq!(constant("PROT_EXEC"), libc::PROT_EXEC as u64);
    assert_eq!(constant("SIGABRT"), libc::SIGABRT as u64);
    assert_eq!(constant("MSG_DONTWAIT"), libc::MSG_DONTWAIT as u64);
    assert_eq!(constant("O_CREAT"), libc::O_CREAT as u64);
    assert_eq!(constant("O_TRUNC"), libc::O_TRUNC as u64);
    assert_eq!(
        constant("O_TMPFILE_BIT"),
        (libc::O_TMPFILE & !libc::O_DIRECTORY) as u64
    );
    assert_eq!(constant("MSG_NOSIGNAL"), libc::MSG_NOSIGNAL as u64);
    assert_eq!(constant("SOCK_NONBLOCK"), libc::SOCK_NONBLOCK as u64);
    assert_eq!(constant("SOCK_CLOEXEC"), libc::SOCK_CLOEXEC as u64);
    assert_eq!(constant("GRND_INSECURE"), libc::GRND_INSECURE as u64);
    assert_eq!(constant("SIGRTMIN"), libc::SIGRTMIN() as u64);
    let thread_flags = libc::CLONE_VM
        | libc::CLONE_FS
        | libc::CLONE_FILES
        | libc::CLONE_SIGHAND
        | libc::CLONE_THREAD
        | libc::CLONE_SYSVSEM
        | libc::CLONE_SETTLS
        | libc::CLONE_PARENT_SETTID
        | libc::CLONE_CHILD_CLEARTID;
    for (name, v) in generated::CONSTANTS {
        if let Some(flag) = name.strip_prefix("CLONE_") {
            assert_ne!(*v & thread_flags as u64, 0, "CLONE_{flag}");
        }
    }
}

#[test]
fn doc_table_is_what_docs_security_md_shows() {
    let table = doc_table();
    println!("{table}");
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/security.md"
    ))
    .unwrap();
    assert!(
        doc.contains(&table),
        "docs/security.md's seccomp table is out of date; it should read:\n{table}"
    );
}
