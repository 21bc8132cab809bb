//! A QMP server in front of a pretend two-vCPU machine, for poking at the
//! protocol with `ncat -U` or a QMP library:
//!
//! ```text
//! cargo run -p sv-qmp --example mock_server -- /tmp/qmp.sock
//! ```
//!
//! `quit` behaves like the real machine: SHUTDOWN, socket removed, exit 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use qmp::{
    CpuInfo, CpuInstanceProperties, EventBus, HotpluggableCpu, QmpError, QmpServer, RunState,
    SocketGuard, StatusInfo, VmControl,
};
use serde_json::json;

struct PretendVm {
    paused: AtomicBool,
    bus: EventBus,
    guard: SocketGuard,
}

fn props(i: u32) -> CpuInstanceProperties {
    CpuInstanceProperties {
        core_id: 0,
        socket_id: i,
        thread_id: 0,
    }
}

impl VmControl for PretendVm {
    fn query_status(&self) -> StatusInfo {
        StatusInfo::new(if self.paused.load(Ordering::SeqCst) {
            RunState::Paused
        } else {
            RunState::Running
        })
    }

    fn stop(&self) -> Result<(), QmpError> {
        self.paused.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn cont(&self) -> Result<(), QmpError> {
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn query_cpus(&self) -> Vec<CpuInfo> {
        (0..2)
            .map(|i| CpuInfo::new(i, props(i), false, i64::from(std::process::id() + i)))
            .collect()
    }

    fn query_hotpluggable_cpus(&self) -> Vec<HotpluggableCpu> {
        (0..2)
            .map(|i| HotpluggableCpu::new(i, props(i), true))
            .collect()
    }

    fn quit(&self) {
        self.bus.emit(
            "SHUTDOWN",
            json!({"guest": false, "reason": "host-qmp-quit"}),
        );
        self.bus.flush();
        self.guard.cleanup();
        std::process::exit(0);
    }
}

fn main() {
    let path: PathBuf = match std::env::args_os().nth(1) {
        Some(p) => p.into(),
        None => {
            eprintln!("usage: mock_server SOCKET_PATH");
            std::process::exit(2);
        }
    };
    let server = match QmpServer::bind(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mock_server: {e}");
            std::process::exit(1);
        }
    };
    let vm = Arc::new(PretendVm {
        paused: AtomicBool::new(false),
        bus: server.event_bus(),
        guard: server.socket_guard(),
    });
    println!("listening on {}", path.display());
    let handle = server.spawn(vm).expect("spawn qmp thread");
    let _ = handle.join();
}
