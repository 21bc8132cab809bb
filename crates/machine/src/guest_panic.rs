//! What happens when the guest reports a panic, through the pvpanic port or KVM's crash
//! system event: as QEMU does with `-action panic=pause` (and QEMU 4.0 before it powered off),
//! the VM is paused, QMP clients get `GUEST_PANICKED` `{"action":"pause"}` and then `STOP`,
//! and `query-status` says `guest-panicked` until `cont` (or `quit`, or Ctrl-A x on the
//! console). A kdump kernel taking over (`PVPANIC_CRASH_LOADED`) is only announced
//! (`GUEST_CRASHLOADED` `{"action":"run"}`): the guest runs on.

use crate::vm::{EventEmitter, VmHandle};
use devices::pvpanic::{PVPANIC_CRASH_LOADED, PVPANIC_PANICKED};
use serde_json::json;

/// Serves the reported `events` (pvpanic bits) on the event loop's thread.
pub fn on_report(handle: &VmHandle, events: Option<&EventEmitter>, reported: u8) {
    let emit = |name: &str, data: serde_json::Value| {
        if let Some(emit) = events {
            emit(name, data);
        }
    };
    if reported & PVPANIC_CRASH_LOADED != 0 {
        log::warn!("the guest reports a crash kernel loaded after a panic; it keeps running");
        emit("GUEST_CRASHLOADED", json!({"action": "run"}));
    }
    if reported & PVPANIC_PANICKED != 0 {
        log::error!(
            "the guest reports a panic: vCPUs paused (query-status: guest-panicked; cont resumes, quit ends the VM)"
        );
        emit("GUEST_PANICKED", json!({"action": "pause"}));
        match handle.pause_for_panic() {
            Ok(true) => emit("STOP", json!({})),
            Ok(false) => {}
            Err(e) => log::error!("cannot pause the panicked guest: {e}"),
        }
    }
}
