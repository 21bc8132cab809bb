//! `stratovirt`: a lightweight VMM for Linux/KVM, a drop-in for the StratoVirt microVM.

mod control;

use config::{Action, VmConfig};
use machine::{cleanup, Machine};
use std::sync::Arc;
use std::time::Instant;

fn fail(msg: impl std::fmt::Display) -> ! {
    cleanup::run_cleanups();
    eprintln!("stratovirt: {msg}");
    std::process::exit(1)
}

/// Options whose devices or features this build does not have yet: refused, never ignored.
fn refuse_unsupported(cfg: &VmConfig) -> Result<(), String> {
    let not_yet = |what: &str| Err(format!("{what} is not supported yet"));
    if !cfg.nets.is_empty() {
        return not_yet("-netdev (virtio-net)");
    }
    if cfg.console.is_some() {
        return not_yet("-chardev (virtio-console)");
    }
    if cfg.vsock.is_some() {
        return not_yet("-device vhost-vsock-device");
    }
    if cfg.incoming.is_some() {
        return not_yet("-incoming (snapshot restore)");
    }
    if cfg.process.daemonize {
        return not_yet("-daemonize");
    }
    Ok(())
}

fn main() {
    let start = Instant::now();
    machine::signals::block_exit_signals();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match config::parse_args(&args) {
        Ok(Action::Run(cfg)) => cfg,
        Ok(Action::Help(text)) | Ok(Action::Version(text)) => {
            println!("{text}");
            return;
        }
        Err(e) => fail(e),
    };
    let log_file = cfg.process.log_file.clone().flatten();
    if let Err(e) = sandbox::logger::init(log_file.as_deref()) {
        fail(e);
    }
    if let Err(e) = refuse_unsupported(&cfg) {
        fail(e);
    }
    log::info!(
        "starting VM {}: {} vCPUs, {} MiB, kernel {}",
        cfg.name,
        cfg.machine.vcpus,
        cfg.machine.mem_size >> 20,
        cfg.boot.kernel.display()
    );

    // The QMP socket accepts connections before the guest starts.
    let qmp = match &cfg.qmp {
        Some(q) => match qmp::QmpServer::bind(&q.path) {
            Ok(server) => {
                let guard = server.socket_guard();
                cleanup::on_exit(move || guard.cleanup());
                Some(server)
            }
            Err(e) => fail(format!("-qmp: {e}")),
        },
        None => None,
    };

    let mut vm = match Machine::build(&cfg, start) {
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
    let handle = match vm.start() {
        Ok(h) => h,
        Err(e) => fail(e),
    };
    if let Some(server) = qmp {
        let ctl = Arc::new(control::VmController::new(
            handle.clone(),
            &cfg,
            vm.block_slots(),
        ));
        let spawned = std::thread::Builder::new()
            .name("qmp".into())
            .spawn(move || server.run(ctl));
        if let Err(e) = spawned {
            fail(format!("cannot start the QMP thread: {e}"));
        }
    }
    vm.run_event_loop(handle)
}
