//! Why and how the VM stops: the first reason reported wins, and the event loop is woken.

use std::sync::Mutex;
use vmm_sys_util::eventfd::EventFd;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExitReason {
    /// Reset pulse or triple fault: a microVM exits instead of rebooting.
    GuestReset,
    GuestShutdown,
    /// `quit` over QMP.
    HostQmpQuit,
    /// SIGTERM, SIGINT, SIGHUP.
    HostSignal(i32),
    /// A fatal vCPU or device error, with the message for the user.
    Error(String),
}

impl VmExitReason {
    /// Process exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmExitReason::Error(_) => 1,
            _ => 0,
        }
    }

    /// The `data` of the QMP `SHUTDOWN` event.
    pub fn shutdown_event(&self) -> (bool, &'static str) {
        match self {
            VmExitReason::GuestReset => (true, "guest-reset"),
            VmExitReason::GuestShutdown => (true, "guest-shutdown"),
            VmExitReason::HostQmpQuit => (false, "host-qmp-quit"),
            VmExitReason::HostSignal(_) => (false, "host-signal"),
            VmExitReason::Error(_) => (false, "guest-panic"),
        }
    }
}

/// Collects the exit reason and wakes the event loop.
pub struct ExitNotifier {
    reason: Mutex<Option<VmExitReason>>,
    pub evt: EventFd,
}

impl ExitNotifier {
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitNotifier {
            reason: Mutex::new(None),
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `reason` unless one is already there, and wakes the loop.
    pub fn notify(&self, reason: VmExitReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if r.is_none() {
            *r = Some(reason);
        }
        let _ = self.evt.write(1);
    }

    pub fn take(&self) -> Option<VmExitReason> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_reason_wins() {
        let n = ExitNotifier::new().unwrap();
        assert_eq!(n.take(), None);
        n.notify(VmExitReason::GuestReset);
        n.notify(VmExitReason::Error("x".into()));
        assert_eq!(n.take(), Some(VmExitReason::GuestReset));
        assert_eq!(n.evt.read().unwrap(), 2);
        assert_eq!(VmExitReason::GuestReset.exit_code(), 0);
        assert_eq!(VmExitReason::Error("x".into()).exit_code(), 1);
        assert_eq!(
            VmExitReason::HostQmpQuit.shutdown_event(),
            (false, "host-qmp-quit")
        );
    }
}
