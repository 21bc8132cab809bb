//! `stratovirt`: a lightweight VMM for Linux/KVM, a drop-in for the StratoVirt microVM.

mod control;
mod migration;

use config::{Action, VmConfig};
use machine::{cleanup, Machine};
use sandbox::seccomp::ThreadKind;
use sandbox::{daemon, last_resort};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The exit path before the event loop runs: the same clean-ups as every other exit, the
/// reason in the log file (when there is one), on stderr, and to a waiting daemon parent.
fn fail(msg: impl std::fmt::Display) -> ! {
    cleanup::run_cleanups();
    let msg = msg.to_string();
    sandbox::logger::report_fatal(&msg);
    daemon::notify_failure(&msg);
    std::process::exit(1)
}

fn logs_to_file() -> bool {
    sandbox::logger::raw_fd() != 2
}

/// A daemon works in `/`: paths given relative to the starting directory are made absolute
/// before it moves there.
fn make_paths_absolute(cfg: &mut VmConfig) -> std::io::Result<()> {
    let abs = |p: &mut PathBuf| -> std::io::Result<()> {
        if p.is_relative() {
            *p = std::path::absolute(&*p)?;
        }
        Ok(())
    };
    abs(&mut cfg.boot.kernel)?;
    if let Some(p) = cfg.boot.initrd.as_mut() {
        abs(p)?;
    }
    for d in &mut cfg.drives {
        abs(&mut d.path)?;
    }
    if let Some(q) = cfg.qmp.as_mut() {
        abs(&mut q.path)?;
    }
    if let Some(c) = cfg.console.as_mut() {
        abs(&mut c.socket_path)?;
    }
    if let Some(p) = cfg.vsock.as_mut().and_then(|v| v.uds_path.as_mut()) {
        abs(p)?;
    }
    if let Some(p) = cfg.process.pidfile.as_mut() {
        abs(p)?;
    }
    if let Some(Some(p)) = cfg.process.log_file.as_mut() {
        abs(p)?;
    }
    Ok(())
}

/// A panic (a bug) still leaves no pidfile, socket or raw terminal behind, and says what
/// happened in the log; with seccomp on, the default hook's backtrace (which reads the
/// executable) is skipped.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        last_resort::run();
        if logs_to_file() {
            log::error!("panic: {info}");
        }
        daemon::notify_failure(&format!("panic: {info}"));
        if sandbox::seccomp::is_enabled() {
            let name = std::thread::current().name().unwrap_or("?").to_string();
            eprintln!("stratovirt: thread '{name}' panicked: {info}");
        } else {
            default(info);
        }
    }));
}

fn log_config(cfg: &VmConfig) {
    let vcpus = cfg.machine.vcpus;
    log::info!(
        "starting VM {}: {vcpus} vCPU{}, {} MiB, kernel {}",
        cfg.name,
        if vcpus == 1 { "" } else { "s" },
        cfg.machine.mem_size >> 20,
        cfg.boot.kernel.display()
    );
    let disks: Vec<String> = cfg
        .drives
        .iter()
        .map(|d| {
            format!(
                "{}={}{}{}",
                d.id,
                d.path.display(),
                if d.read_only { ",ro" } else { "" },
                if d.direct { ",direct" } else { "" }
            )
        })
        .collect();
    let nics: Vec<String> = cfg
        .nets
        .iter()
        .map(|n| {
            format!(
                "{}={}{}",
                n.device_id(),
                match n.fd {
                    Some(fd) => format!("fd:{fd}"),
                    None => n.host_dev_name.clone(),
                },
                if n.vhost { ",vhost" } else { "" }
            )
        })
        .collect();
    log::info!(
        "config: disks [{}], NICs [{}], balloon {}, initrd {}, qmp {}, console {}, serial {}, \
         seccomp {}, daemon {}, pidfile {}, guest memory in core dumps {}, pid {}",
        disks.join(" "),
        nics.join(" "),
        cfg.balloon.as_ref().map_or("none".into(), |b| format!(
            "yes (deflate-on-oom {}, free-page-reporting {})",
            if b.deflate_on_oom { "on" } else { "off" },
            if b.free_page_reporting { "on" } else { "off" }
        )),
        cfg.boot
            .initrd
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        cfg.qmp
            .as_ref()
            .map_or("none".into(), |q| q.path.display().to_string()),
        cfg.console
            .as_ref()
            .map_or("none".into(), |c| c.socket_path.display().to_string()),
        if cfg.serial.as_ref().is_some_and(|s| s.stdio) {
            "stdio"
        } else {
            "none"
        },
        if cfg.process.seccomp { "on" } else { "off" },
        if cfg.process.daemonize { "yes" } else { "no" },
        cfg.process
            .pidfile
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string()),
        if cfg.machine.omit_vm_memory {
            "no"
        } else {
            "yes"
        },
        std::process::id()
    );
}

/// With `-serial stdio` on a terminal, the event loop makes it raw: keep its attributes so
/// that a last-resort exit (seccomp violation, panic) restores them too.
fn save_terminal(cfg: &VmConfig) {
    if !cfg.serial.as_ref().is_some_and(|s| s.stdio) {
        return;
    }
    // SAFETY: termios is plain data; tcgetattr fills it or fails (then it is not used).
    let mut attrs: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `attrs` is a valid termios to write into.
    if unsafe { libc::tcgetattr(0, &mut attrs) } == 0 {
        last_resort::restore_terminal_on_abort(0, attrs);
    }
}

fn main() {
    let start = Instant::now();
    machine::signals::block_exit_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = match config::parse_args(&args) {
        Ok(Action::Run(cfg)) => cfg,
        Ok(Action::Help(text)) | Ok(Action::Version(text)) => {
            println!("{text}");
            return;
        }
        // With no arguments at all, also say how to start.
        Err(e) if args.is_empty() => fail(format!("{e}\n{}", config::short_usage())),
        Err(e) => fail(e),
    };
    let log_file = cfg.process.log_file.clone().flatten();
    let log_requested = cfg.process.log_file.is_some();
    if let Err(e) = sandbox::logger::init(log_file.as_deref(), log_requested) {
        fail(e);
    }
    // The NICs' TAPs (and vhost devices) first: a bad one is refused before anything exists.
    let nics = match machine::attach::open_nic_backends(&cfg.nets) {
        Ok(n) => n,
        Err(e) => fail(e),
    };
    let vhost_vsock = match machine::attach::open_vhost_vsock(cfg.vsock.as_ref()) {
        Ok(v) => v,
        Err(e) => fail(e),
    };
    if cfg.process.daemonize {
        if let Err(e) = make_paths_absolute(&mut cfg) {
            fail(format!("-daemonize: cannot resolve a relative path: {e}"));
        }
    }
    if cfg.process.seccomp {
        if let Err(e) = sandbox::seccomp::enable() {
            fail(e);
        }
    }
    // Before any thread exists.
    if cfg.process.daemonize {
        if let Err(e) = daemon::daemonize() {
            fail(e);
        }
    }
    install_panic_hook();
    log_config(&cfg);
    if let Some(path) = &cfg.process.pidfile {
        match sandbox::pidfile::PidFile::create(path) {
            Ok(pidfile) => {
                last_resort::unlink_on_abort(pidfile.path());
                cleanup::on_exit(move || pidfile.remove());
            }
            Err(e) => fail(e),
        }
    }

    // The QMP socket accepts connections before the guest starts.
    let qmp = match &cfg.qmp {
        Some(q) => match qmp::QmpServer::bind(&q.path) {
            Ok(server) => {
                last_resort::unlink_on_abort(&q.path);
                let guard = server.socket_guard();
                cleanup::on_exit(move || guard.cleanup());
                Some(server)
            }
            Err(e) => fail(format!("-qmp: {e}")),
        },
        None => None,
    };

    let host = machine::attach::HostResources { nics, vhost_vsock };
    let built = match &cfg.incoming {
        Some(dir) => Machine::restore(&cfg, start, dir, host),
        None => Machine::build(&cfg, start, host),
    };
    let mut vm = match built {
        Ok(vm) => vm,
        Err(e) => fail(e),
    };
    let events = qmp.as_ref().map(|s| s.event_bus());
    if let Some(bus) = events.clone() {
        vm.set_event_emitter(Arc::new(move |name, data| {
            bus.emit(name, data);
            bus.flush();
        }));
    }
    if let (Some(bus), Some(balloon)) = (events.clone(), vm.balloon()) {
        // Sent from the balloon thread, which must not wait for slow clients: no flush.
        balloon.set_change_sink(Arc::new(move |actual| {
            bus.emit(
                qmp::balloon::BALLOON_CHANGED,
                serde_json::to_value(qmp::balloon::BalloonInfo { actual }).unwrap_or_default(),
            );
        }));
    }
    let handle = match vm.start() {
        Ok(h) => h,
        Err(e) => fail(e),
    };
    if let Some(server) = qmp {
        let ctl = match control::VmController::new(handle.clone(), &cfg, vm.slots(), vm.balloon()) {
            Ok(c) => Arc::new(c),
            Err(e) => fail(e),
        };
        let spawned = std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || server.run(ctl));
        if let Err(e) = spawned {
            fail(format!("cannot start the QMP thread: {e}"));
        }
    }
    save_terminal(&cfg);
    // The VM is built and QMP accepts connections: a daemon's parent may exit now.
    daemon::notify_ready();
    sandbox::seccomp::apply(ThreadKind::Main);
    vm.run_event_loop(handle)
}
