//! Building the microvm from a [`VmConfig`], running it, and the event loop that serves the
//! serial console, host signals and the VM's exit.

use crate::boot::kernel;
use crate::cleanup;
use crate::console_escape::{self, ConsoleEscape, EscapeCommand};
use crate::exit::{ExitNotifier, VmExitReason};
use crate::hotplug::BootDevice;
use crate::layout::*;
use crate::legacy::LegacyDevices;
use crate::slots::SlotTable;
use crate::snapshot::{SaveReport, SnapshotSource};
use crate::vcpu::{self, Vcpu, VcpuControl, VcpuHandle, VcpuSet};
use config::VmConfig;
use devices::bus::lock;
use devices::pvpanic::PanicNotifier;
use devices::virtio::balloon::BalloonHandle;
use kvm_ioctls::{Kvm, VmFd};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;

/// Errors building or starting the VM; each says what failed.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error("cannot open /dev/kvm: {0} (KVM is required)")]
    KvmOpen(kvm_ioctls::Error),
    #[error("KVM: {what}: {err}")]
    Kvm {
        what: &'static str,
        err: kvm_ioctls::Error,
    },
    #[error("{0}")]
    Memory(std::io::Error),
    #[error(transparent)]
    Load(#[from] kernel::LoadError),
    #[error("kernel command line is {0} bytes, the limit is {max}", max = CMDLINE_MAX_SIZE - 1)]
    CmdlineTooLong(usize),
    #[error("writing boot data into guest memory: {0}")]
    BootData(String),
    #[error("{0}")]
    Device(String),
    #[error("cannot start vCPU thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot restore the snapshot: {0}")]
    Snapshot(String),
}

/// Sends a QMP event (name, data) to whoever listens.
pub type EventEmitter = Arc<dyn Fn(&str, serde_json::Value) + Send + Sync>;

/// A built VM whose vCPUs have not started yet.
pub struct Machine {
    _kvm: Kvm,
    _vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
    vcpus: Vec<Vcpu>,
    control: Arc<VcpuControl>,
    legacy: LegacyDevices,
    panic: Arc<PanicNotifier>,
    serial_stdio: bool,
    exit: Arc<ExitNotifier>,
    events: Option<EventEmitter>,
    slots: SlotTable,
    /// The id of each slot's device (None for an empty slot).
    slot_ids: Vec<Option<BootDevice>>,
    snapshot: Arc<SnapshotSource>,
    balloon: Option<BalloonHandle>,
}

/// What the rest of the VMM (QMP) can do with a running VM.
pub struct VmHandle {
    set: VcpuSet,
    exit: Arc<ExitNotifier>,
    /// Paused because the guest reported a panic (cleared by `resume`).
    panicked: AtomicBool,
    snapshot: Arc<SnapshotSource>,
}

/// The VM's state as `query-status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmRunState {
    Running,
    Paused,
    GuestPanicked,
}

/// One vCPU as `query-cpus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    pub id: u8,
    pub thread_id: i32,
    pub halted: bool,
}

impl VmHandle {
    pub fn is_running(&self) -> bool {
        self.set.control.state() == vcpu::RunState::Running
    }

    pub fn run_state(&self) -> VmRunState {
        if self.is_running() {
            VmRunState::Running
        } else if self.panicked.load(Ordering::Acquire) {
            VmRunState::GuestPanicked
        } else {
            VmRunState::Paused
        }
    }

    /// Pauses the VM because the guest panicked. Ok(true) if this paused it, Ok(false) if it
    /// was paused already (then only the state changes).
    pub fn pause_for_panic(&self) -> Result<bool, String> {
        self.panicked.store(true, Ordering::Release);
        if !self.is_running() {
            return Ok(false);
        }
        self.set.pause().map(|()| true)
    }

    /// Stops every vCPU.
    pub fn pause(&self) -> Result<(), String> {
        self.set.pause()
    }

    /// Lets the vCPUs run again.
    pub fn resume(&self) -> Result<(), String> {
        if self.set.control.state() != vcpu::RunState::Paused {
            return Err("the VM is not paused".into());
        }
        self.panicked.store(false, Ordering::Release);
        self.set.resume();
        Ok(())
    }

    pub fn cpus(&self) -> Vec<CpuState> {
        let running = self.is_running();
        self.set
            .vcpus
            .iter()
            .map(|v| CpuState {
                id: v.id,
                thread_id: v.shared.tid.load(Ordering::Acquire),
                halted: !running && v.shared.halted.load(Ordering::Acquire),
            })
            .collect()
    }

    /// Asks the event loop to end the VM.
    pub fn request_exit(&self, reason: VmExitReason) {
        self.exit.notify(reason);
    }

    /// Whether every device can be part of a snapshot (before anything is paused).
    pub fn check_snapshot_supported(&self) -> Result<(), String> {
        self.snapshot.check_supported()
    }

    /// Writes a snapshot of the paused VM into `dir`; `slot_ids` are the slots' device ids.
    pub fn save_snapshot(
        &self,
        dir: &snapshot::SnapshotDir,
        slot_ids: &[Option<String>],
    ) -> Result<SaveReport, String> {
        if self.is_running() {
            return Err("the VM must be paused".into());
        }
        self.snapshot.save(&self.set, dir, slot_ids)
    }
}

/// The kernel command line the guest gets: the user's, then one `virtio_mmio.device=` entry
/// per transport.
pub fn kernel_cmdline(cfg: &VmConfig, virtio: &[String]) -> String {
    let mut line = cfg.boot.cmdline.trim().to_string();
    for entry in virtio {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(entry);
    }
    line
}

/// What the two recipes of [`crate::builder`] hand over to a machine.
pub(crate) struct MachineParts {
    pub kvm: Kvm,
    pub vm: Arc<VmFd>,
    pub mem: GuestMemoryMmap,
    pub vcpus: Vec<Vcpu>,
    pub control: Arc<VcpuControl>,
    pub legacy: LegacyDevices,
    pub panic: Arc<PanicNotifier>,
    pub serial_stdio: bool,
    pub exit: Arc<ExitNotifier>,
    pub slots: SlotTable,
    pub slot_ids: Vec<Option<BootDevice>>,
    pub snapshot: Arc<SnapshotSource>,
    pub balloon: Option<BalloonHandle>,
}

impl Machine {
    pub(crate) fn assembled(p: MachineParts) -> Machine {
        Machine {
            _kvm: p.kvm,
            _vm: p.vm,
            mem: p.mem,
            vcpus: p.vcpus,
            control: p.control,
            legacy: p.legacy,
            panic: p.panic,
            serial_stdio: p.serial_stdio,
            exit: p.exit,
            events: None,
            slots: p.slots,
            slot_ids: p.slot_ids,
            snapshot: p.snapshot,
            balloon: p.balloon,
        }
    }

    /// The memory balloon, if the configuration has one (QMP `balloon`, `query-balloon`).
    pub fn balloon(&self) -> Option<BalloonHandle> {
        self.balloon.clone()
    }

    /// The virtio slots and the ids of their boot devices (for hot-plug).
    pub fn slots(&self) -> (SlotTable, Vec<Option<BootDevice>>) {
        (self.slots.clone(), self.slot_ids.clone())
    }

    /// Where QMP events go.
    pub fn set_event_emitter(&mut self, events: EventEmitter) {
        self.events = Some(events);
    }

    /// Guest memory (for tests and snapshots).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Starts every vCPU thread; the boot vCPU begins executing the kernel.
    pub fn start(&mut self) -> Result<Arc<VmHandle>, MachineError> {
        vcpu::install_kick_handler().map_err(MachineError::Thread)?;
        let slots = self.slots.clone();
        cleanup::on_exit(move || slots.flush_all());
        let control = self.control.clone();
        let mut handles = Vec::new();
        for v in self.vcpus.drain(..) {
            let (id, shared) = (v.id, v.shared.clone());
            let thread = v.start().map_err(MachineError::Thread)?;
            handles.push(VcpuHandle { id, shared, thread });
        }
        Ok(Arc::new(VmHandle {
            set: VcpuSet {
                control,
                vcpus: handles,
            },
            exit: self.exit.clone(),
            panicked: AtomicBool::new(false),
            snapshot: self.snapshot.clone(),
        }))
    }

    /// Serves the console, signals and the VM's exit on the calling thread; never returns.
    pub fn run_event_loop(self, handle: Arc<VmHandle>) -> ! {
        let stdin_raw = self.serial_stdio && crate::terminal::make_raw(0).unwrap_or(false);
        let sigfd = crate::signals::exit_signalfd();
        let mut stdin_open = self.serial_stdio;
        let mut stdin_wanted = true;
        let mut buf = [0u8; 64];
        let rtc_timer = lock(&self.legacy.rtc).timer_fd();
        let mut escape = stdin_raw.then(ConsoleEscape::default);
        match (self.serial_stdio, stdin_raw) {
            (false, _) => log::info!("VM running"),
            (true, false) => log::info!("VM running (serial console on stdin/stdout)"),
            (true, true) => log::info!(
                "VM running (serial console on this terminal; Ctrl-A x quits, Ctrl-A h lists the keys)"
            ),
        }
        loop {
            let mut fds = [
                pollfd(self.exit.evt.as_raw_fd()),
                pollfd(self.legacy.reset_evt.as_raw_fd()),
                pollfd(self.legacy.serial_input_ready.as_raw_fd()),
                pollfd(sigfd.as_ref().map_or(-1, |f| f.as_raw_fd())),
                pollfd(if stdin_open && stdin_wanted { 0 } else { -1 }),
                pollfd(rtc_timer),
                pollfd(self.panic.evt.as_raw_fd()),
            ];
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                continue;
            }
            let ready = |i: usize| fds[i].revents != 0;
            if ready(0) {
                let _ = self.exit.evt.read();
                if let Some(reason) = self.exit.take() {
                    self.shutdown(&handle, reason);
                }
            }
            if ready(1) {
                let _ = self.legacy.reset_evt.read();
                self.shutdown(&handle, VmExitReason::GuestReset);
            }
            if ready(2) {
                let _ = self.legacy.serial_input_ready.read();
                stdin_wanted = true;
            }
            if ready(3) {
                if let Some(sig) = sigfd.as_ref().and_then(crate::signals::read_signal) {
                    self.shutdown(&handle, VmExitReason::HostSignal(sig));
                }
            }
            if ready(5) {
                lock(&self.legacy.rtc).on_timer();
            }
            if ready(6) {
                let reported = self.panic.take();
                crate::guest_panic::on_report(&handle, self.events.as_ref(), reported);
            }
            if ready(4) {
                let room = lock(&self.legacy.serial).input_capacity().min(buf.len());
                if room == 0 {
                    stdin_wanted = false;
                    continue;
                }
                // SAFETY: reads at most `room` bytes into `buf`, which is that large.
                let got = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, room) };
                if got <= 0 {
                    // End of input (or an error): the guest keeps running without a keyboard.
                    stdin_open = false;
                    continue;
                }
                let mut n = got as usize;
                if let Some(esc) = escape.as_mut() {
                    let (kept, command) = esc.filter(&mut buf[..n]);
                    n = kept;
                    match command {
                        Some(EscapeCommand::Quit) => self.shutdown(&handle, VmExitReason::HostUi),
                        Some(EscapeCommand::Help) => {
                            let _ = std::io::stdout().write_all(console_escape::HELP.as_bytes());
                        }
                        None => {}
                    }
                }
                lock(&self.legacy.serial).enqueue(&buf[..n]);
            }
        }
    }

    /// Ends the VM: stops the vCPUs, emits `SHUTDOWN`, runs the clean-ups and exits.
    fn shutdown(&self, handle: &VmHandle, reason: VmExitReason) -> ! {
        shutdown(handle, self.events.as_ref(), reason)
    }
}

/// The one exit path for every reason.
pub fn shutdown(handle: &VmHandle, events: Option<&EventEmitter>, reason: VmExitReason) -> ! {
    if !cleanup::claim_exit() {
        // Another thread is already exiting the process.
        loop {
            std::thread::park();
        }
    }
    handle.set.exit();
    let (guest, why) = reason.shutdown_event();
    log::info!("VM shutting down: {}", reason.describe());
    if reason == VmExitReason::HostUi {
        // What QEMU's console prints, so the user sees why the guest's output stopped.
        let _ = std::io::stdout().write_all(b"\r\nstratovirt: terminated (Ctrl-A x)\r\n");
    }
    if let Some(emit) = events {
        emit(
            "SHUTDOWN",
            serde_json::json!({"guest": guest, "reason": why}),
        );
    }
    cleanup::run_cleanups();
    if let VmExitReason::Error(msg) = &reason {
        sandbox::logger::report_fatal(msg);
    }
    std::process::exit(reason.exit_code())
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
