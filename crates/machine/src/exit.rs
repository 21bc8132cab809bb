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
    /// The console's quit key (Ctrl-A x on `-serial stdio`).
    HostUi,
    /// A fatal vCPU or device error, with the message for the user.
    Error(String),
}

/// `SIGTERM` for 15: the name a user knows a signal by.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGKILL => "SIGKILL".into(),
        n => format!("signal {n}"),
    }
}

impl VmExitReason {
    /// Process exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmExitReason::Error(_) => 1,
            _ => 0,
        }
    }

    /// The `data` of the QMP `SHUTDOWN` event, with QEMU's `ShutdownCause` names. A fatal
    /// vCPU or device error (an emulation failure, a failed VM entry) is `host-error`: the
    /// guest did not report a panic, the VMM could not go on running it.
    pub fn shutdown_event(&self) -> (bool, &'static str) {
        match self {
            VmExitReason::GuestReset => (true, "guest-reset"),
            VmExitReason::GuestShutdown => (true, "guest-shutdown"),
            VmExitReason::HostQmpQuit => (false, "host-qmp-quit"),
            VmExitReason::HostSignal(_) => (false, "host-signal"),
            VmExitReason::HostUi => (false, "host-ui"),
            VmExitReason::Error(_) => (false, "host-error"),
        }
    }

    /// The reason as the log says it: the event's name, plus the signal or key.
    pub fn describe(&self) -> String {
        let (_, name) = self.shutdown_event();
        match self {
            VmExitReason::HostSignal(sig) => format!("{name} ({})", signal_name(*sig)),
            VmExitReason::HostUi => format!("{name} (Ctrl-A x on the console)"),
            _ => name.to_string(),
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

    #[test]
    fn every_reason_has_its_own_name() {
        let all = [
            VmExitReason::GuestReset,
            VmExitReason::GuestShutdown,
            VmExitReason::HostQmpQuit,
            VmExitReason::HostSignal(libc::SIGTERM),
            VmExitReason::HostUi,
            VmExitReason::Error("vCPU 0: KVM internal error".into()),
        ];
        let names: Vec<_> = all.iter().map(|r| r.shutdown_event().1).collect();
        assert_eq!(
            names,
            [
                "guest-reset",
                "guest-shutdown",
                "host-qmp-quit",
                "host-signal",
                "host-ui",
                "host-error"
            ]
        );
        assert!(
            !names.contains(&"guest-panic"),
            "an emulation failure is not a guest panic"
        );
        assert_eq!(
            VmExitReason::HostSignal(libc::SIGTERM).describe(),
            "host-signal (SIGTERM)"
        );
        assert_eq!(
            VmExitReason::HostSignal(libc::SIGHUP).describe(),
            "host-signal (SIGHUP)"
        );
        assert_eq!(
            VmExitReason::HostSignal(40).describe(),
            "host-signal (signal 40)"
        );
        assert_eq!(VmExitReason::Error("x".into()).describe(), "host-error");
    }
}
