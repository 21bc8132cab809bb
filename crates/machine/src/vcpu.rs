//! vCPU threads. Each runs `KVM_RUN` in a loop on its own thread named `vcpu<N>`, routes port
//! and MMIO exits to the buses, and parks when the VM is paused. A real-time signal kicks a
//! thread out of `KVM_RUN` (through `immediate_exit`, so a kick racing with entry is not lost).

use crate::coalesced::CoalescedRing;
use crate::exit::{ExitNotifier, VmExitReason};
use crate::snapshot::vcpu::VcpuState;
use devices::pvpanic::{PanicNotifier, PVPANIC_PANICKED};
use devices::Bus;
use kvm_bindings::{kvm_run, KVM_MP_STATE_HALTED, KVM_MP_STATE_UNINITIALIZED};
use kvm_ioctls::{VcpuExit, VcpuFd};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

/// How long `pause` waits for every vCPU to park before reporting the stuck one.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    KVM_RUN.with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer is this thread's own kvm_run mapping, set while its VcpuFd is
            // alive and cleared before the fd is dropped; writing immediate_exit is what the KVM
            // API intends for signal handlers.
            unsafe { (*run).immediate_exit = 1 };
        }
    });
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> i32 {
    SIGRTMIN()
}

/// Installs the kick handler once per process.
pub fn install_kick_handler() -> std::io::Result<()> {
    register_signal_handler(kick_signal(), kick_handler)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    Exiting,
}

struct Inner {
    state: RunState,
    parked: usize,
    /// Bumped by `save_all`: each parked vCPU then saves its state into `saved`.
    save_gen: u64,
    saved: Vec<Option<Result<VcpuState, String>>>,
}

/// Run state shared by the VM and every vCPU thread.
pub struct VcpuControl {
    inner: Mutex<Inner>,
    cond: Condvar,
}

impl Default for VcpuControl {
    fn default() -> Self {
        VcpuControl {
            inner: Mutex::new(Inner {
                state: RunState::Running,
                parked: 0,
                save_gen: 0,
                saved: Vec::new(),
            }),
            cond: Condvar::new(),
        }
    }
}

impl VcpuControl {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state(&self) -> RunState {
        self.lock().state
    }

    /// Called by vCPU `index` between runs: parks while paused, saving its state whenever a
    /// snapshot asks for it (`save`). False once the VM is exiting.
    fn checkpoint(
        &self,
        index: usize,
        on_park: impl FnOnce(),
        save: impl Fn() -> Result<VcpuState, String>,
    ) -> bool {
        let mut g = self.lock();
        if g.state == RunState::Paused {
            on_park();
            g.parked += 1;
            self.cond.notify_all();
            let mut seen = g.save_gen;
            while g.state == RunState::Paused {
                if g.save_gen != seen {
                    seen = g.save_gen;
                    if let Some(slot) = g.saved.get_mut(index) {
                        *slot = Some(save());
                    }
                    self.cond.notify_all();
                    continue;
                }
                g = self.cond.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            g.parked -= 1;
        }
        g.state != RunState::Exiting
    }

    /// The state of every vCPU of a paused VM, each saved by its own (parked) thread.
    fn save_all(&self, count: usize) -> Result<Vec<VcpuState>, String> {
        let mut g = self.lock();
        if g.state != RunState::Paused || g.parked < count {
            return Err("the VM is not paused".into());
        }
        g.saved = (0..count).map(|_| None).collect();
        g.save_gen += 1;
        self.cond.notify_all();
        let (mut g, timeout) = self
            .cond
            .wait_timeout_while(g, PAUSE_TIMEOUT, |g| g.saved.iter().any(Option::is_none))
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            return Err("a vCPU did not save its state in time".into());
        }
        std::mem::take(&mut g.saved)
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.expect("all saved").map_err(|e| format!("vCPU {i}: {e}")))
            .collect()
    }

    /// Asks every vCPU to park and waits until `count` have.
    fn pause(&self, count: usize, kick: impl Fn()) -> Result<(), String> {
        {
            let mut g = self.lock();
            if g.state != RunState::Running {
                return Err("the VM is not running".into());
            }
            g.state = RunState::Paused;
        }
        kick();
        let g = self.lock();
        let (g, timeout) = self
            .cond
            .wait_timeout_while(g, PAUSE_TIMEOUT, |g| g.parked < count)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            let parked = g.parked;
            drop(g);
            self.resume();
            return Err(format!("only {parked} of {count} vCPUs stopped"));
        }
        Ok(())
    }

    fn resume(&self) {
        let mut g = self.lock();
        if g.state == RunState::Paused {
            g.state = RunState::Running;
        }
        self.cond.notify_all();
    }

    fn exit(&self) {
        self.lock().state = RunState::Exiting;
        self.cond.notify_all();
    }
}

/// What other threads may know about one vCPU.
#[derive(Default)]
pub struct VcpuShared {
    /// Host thread id, 0 until the thread started.
    pub tid: AtomicI32,
    /// Whether the vCPU was halted (or not yet started) when it last parked.
    pub halted: AtomicBool,
}

/// One vCPU, before its thread starts.
pub struct Vcpu {
    pub id: u8,
    pub fd: VcpuFd,
    pub pio: Arc<Bus>,
    pub mmio: Arc<Bus>,
    pub mem: GuestMemoryMmap,
    pub control: Arc<VcpuControl>,
    pub shared: Arc<VcpuShared>,
    pub exit: Arc<ExitNotifier>,
    /// Where a crash the guest reports through KVM goes (as pvpanic reports do).
    pub panic: Arc<PanicNotifier>,
    /// The MSRs a snapshot saves (KVM_GET_MSR_INDEX_LIST).
    pub msr_indices: Arc<Vec<u32>>,
    /// The VM's ring of coalesced port writes, replayed after every `KVM_RUN`.
    pub coalesced: Option<Arc<CoalescedRing>>,
}

/// What to do after one exit.
enum Next {
    Continue,
    /// The guest reported a crash (`KVM_SYSTEM_EVENT_CRASH`); it may run on until paused.
    Panicked,
    Stop(VmExitReason),
    /// A triple fault: what a PC does is reset.
    TripleFault,
    Fatal(&'static str),
}

impl Vcpu {
    /// Starts the thread `vcpu<N>`.
    pub fn start(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("vcpu{}", self.id))
            .spawn(move || self.run())
    }

    fn run(mut self) {
        sandbox::seccomp::apply(sandbox::seccomp::ThreadKind::Vcpu);
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.shared.tid.store(tid, Ordering::Release);
        KVM_RUN.with(|p| p.set(self.fd.get_kvm_run() as *mut kvm_run));
        loop {
            let (fd, shared, msrs) = (&self.fd, &self.shared, &self.msr_indices);
            let running = self.control.checkpoint(
                usize::from(self.id),
                || {
                    let halted = fd.get_mp_state().map(|s| {
                        s.mp_state == KVM_MP_STATE_HALTED
                            || s.mp_state == KVM_MP_STATE_UNINITIALIZED
                    });
                    shared
                        .halted
                        .store(halted.unwrap_or(false), Ordering::Release);
                },
                || VcpuState::save(fd, msrs),
            );
            if !running {
                break;
            }
            let run = self.fd.run();
            // Writes KVM recorded come before the exit that ended this run.
            if let Some(ring) = &self.coalesced {
                ring.replay(&self.pio, &self.mmio);
            }
            let next = match run {
                Ok(exit) => handle_exit(exit, &self.pio, &self.mmio),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                    Next::Continue
                }
                Err(e) => Next::Stop(VmExitReason::Error(format!(
                    "vCPU {}: KVM_RUN failed: {e}",
                    self.id
                ))),
            };
            match next {
                Next::Continue => {}
                Next::Panicked => self.panic.report(PVPANIC_PANICKED),
                Next::Stop(reason) => {
                    self.exit.notify(reason);
                    break;
                }
                Next::TripleFault => {
                    // Said once, in the log: a guest that resets this way says nothing itself.
                    log::info!(
                        "{}; the guest resets",
                        self.describe_failure("triple fault")
                    );
                    self.exit.notify(VmExitReason::GuestReset);
                    break;
                }
                Next::Fatal(what) => {
                    let msg = self.describe_failure(what);
                    self.exit.notify(VmExitReason::Error(msg));
                    break;
                }
            }
        }
        KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
    }

    /// "vCPU 1: <what> at RIP 0x..., instruction bytes: 0f 57 c0 ..."
    fn describe_failure(&mut self, what: &str) -> String {
        let rip = match self.fd.get_regs() {
            Ok(r) => r.rip,
            Err(e) => return format!("vCPU {}: {what} (registers unreadable: {e})", self.id),
        };
        let phys = self
            .fd
            .translate_gva(rip)
            .ok()
            .filter(|t| t.valid != 0)
            .map(|t| t.physical_address)
            .unwrap_or(rip);
        let mut bytes = [0u8; 15];
        let shown = match self.mem.read_slice(&mut bytes, GuestAddress(phys)) {
            Ok(()) => bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => "unreadable".to_string(),
        };
        format!(
            "vCPU {}: {what} at RIP 0x{rip:x}, instruction bytes: {shown}",
            self.id
        )
    }
}

fn handle_exit(exit: VcpuExit, pio: &Bus, mmio: &Bus) -> Next {
    match exit {
        VcpuExit::IoIn(port, data) => {
            if !pio.read(u64::from(port), data) {
                data.fill(0xff);
            }
            Next::Continue
        }
        VcpuExit::IoOut(port, data) => {
            pio.write(u64::from(port), data);
            Next::Continue
        }
        VcpuExit::MmioRead(addr, data) => {
            if !mmio.read(addr, data) {
                data.fill(0);
            }
            Next::Continue
        }
        VcpuExit::MmioWrite(addr, data) => {
            mmio.write(addr, data);
            Next::Continue
        }
        VcpuExit::Hlt | VcpuExit::Intr | VcpuExit::IrqWindowOpen => Next::Continue,
        VcpuExit::Shutdown => Next::TripleFault,
        VcpuExit::SystemEvent(kind, _) => match kind {
            kvm_bindings::KVM_SYSTEM_EVENT_RESET => Next::Stop(VmExitReason::GuestReset),
            kvm_bindings::KVM_SYSTEM_EVENT_CRASH => Next::Panicked,
            _ => Next::Stop(VmExitReason::GuestShutdown),
        },
        VcpuExit::InternalError => Next::Fatal("KVM internal error (emulation failure)"),
        VcpuExit::FailEntry(reason, _) => {
            log::error!("hardware entry failure reason 0x{reason:x}");
            Next::Fatal("VM entry failed")
        }
        other => {
            log::error!("unexpected vCPU exit: {other:?}");
            Next::Fatal("unexpected exit")
        }
    }
}

/// A started vCPU thread.
pub struct VcpuHandle {
    pub id: u8,
    pub shared: Arc<VcpuShared>,
    pub thread: JoinHandle<()>,
}

/// All vCPU threads of a VM.
pub struct VcpuSet {
    pub control: Arc<VcpuControl>,
    pub vcpus: Vec<VcpuHandle>,
}

impl VcpuSet {
    fn kick_all(&self) {
        for v in &self.vcpus {
            if let Err(e) = v.thread.kill(kick_signal()) {
                // The thread may already have ended (its vCPU stopped the VM).
                log::debug!("vcpu{}: kick failed: {e}", v.id);
            }
        }
    }

    /// Stops every vCPU; returns once all have parked.
    pub fn pause(&self) -> Result<(), String> {
        self.control.pause(self.vcpus.len(), || self.kick_all())
    }

    pub fn resume(&self) {
        self.control.resume();
    }

    /// Every vCPU's state, in index order; the VM must be paused.
    pub fn save_all(&self) -> Result<Vec<VcpuState>, String> {
        self.control.save_all(self.vcpus.len())
    }

    /// Makes every vCPU thread leave its loop.
    pub fn exit(&self) {
        self.control.exit();
        self.kick_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_parks_and_resumes() {
        let c = Arc::new(VcpuControl::default());
        let mut threads = Vec::new();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..3 {
            let (c, runs) = (c.clone(), runs.clone());
            threads.push(std::thread::spawn(move || {
                while c.checkpoint(0, || {}, || Err("no vCPU".into())) {
                    runs.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }));
        }
        c.pause(3, || {}).unwrap();
        assert_eq!(c.state(), RunState::Paused);
        let before = runs.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            runs.load(Ordering::Relaxed),
            before,
            "nothing runs while paused"
        );
        assert!(c.pause(3, || {}).is_err(), "pausing twice is an error");
        c.resume();
        std::thread::sleep(Duration::from_millis(20));
        assert!(runs.load(Ordering::Relaxed) > before);
        c.exit();
        for t in threads {
            t.join().unwrap();
        }
    }
}
