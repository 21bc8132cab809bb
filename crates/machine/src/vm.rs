//! Building the microvm from a [`VmConfig`], running it, and the event loop that serves the
//! serial console, host signals and the VM's exit.

use crate::attach::HostResources;
use crate::boot::{cpuid, kernel, mptable, params, regs};
use crate::cleanup;
use crate::console_escape::{self, ConsoleEscape, EscapeCommand};
use crate::exit::{ExitNotifier, VmExitReason};
use crate::hotplug::BootDevice;
use crate::layout::*;
use crate::legacy::LegacyDevices;
use crate::memory;
use crate::slots::SlotTable;
use crate::vcpu::{self, Vcpu, VcpuControl, VcpuHandle, VcpuSet, VcpuShared};
use config::VmConfig;
use devices::bus::lock;
use devices::pvpanic::{PanicNotifier, PvPanic, PVPANIC_PORT};
use devices::Bus;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

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
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MachineError {
    move |err| MachineError::Kvm { what, err }
}

/// Sends a QMP event (name, data) to whoever listens.
pub type EventEmitter = Arc<dyn Fn(&str, serde_json::Value) + Send + Sync>;

/// A built VM whose vCPUs have not started yet.
pub struct Machine {
    _kvm: Kvm,
    _vm: VmFd,
    mem: GuestMemoryMmap,
    vcpus: Vec<Vcpu>,
    control: Arc<VcpuControl>,
    legacy: LegacyDevices,
    panic: Arc<PanicNotifier>,
    serial_stdio: bool,
    exit: Arc<ExitNotifier>,
    events: Option<EventEmitter>,
    slots: SlotTable,
    /// Each slot's device from boot (None for an empty slot).
    slot_ids: Vec<Option<BootDevice>>,
}

/// What the rest of the VMM (QMP) can do with a running VM.
pub struct VmHandle {
    set: VcpuSet,
    exit: Arc<ExitNotifier>,
    /// Paused because the guest reported a panic (cleared by `resume`).
    panicked: AtomicBool,
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

impl Machine {
    /// Creates the VM, its memory, devices and vCPUs, and loads the kernel; `host` holds what
    /// was opened for it beforehand ([`crate::attach::HostResources`]).
    pub fn build(
        cfg: &VmConfig,
        start: Instant,
        host: HostResources,
    ) -> Result<Machine, MachineError> {
        let kvm = Kvm::new().map_err(MachineError::KvmOpen)?;
        let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
        let mem =
            memory::create_guest_memory(cfg.machine.mem_size).map_err(MachineError::Memory)?;
        if cfg.machine.omit_vm_memory {
            memory::exclude_from_core_dumps(&mem).map_err(MachineError::Memory)?;
        }
        for (slot, region) in mem.iter().enumerate() {
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the host range is a live mapping owned by `mem`, which the Machine keeps
            // for as long as the VM exists; slots don't overlap.
            unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("register guest memory"))?;
        }
        vm.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm_err("set TSS address"))?;
        vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
            .map_err(kvm_err("set identity map address"))?;
        vm.create_irq_chip().map_err(kvm_err("create irqchip"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm_err("create PIT"))?;

        // Legacy devices.
        let dev_err =
            |what: &str, e: &dyn std::fmt::Display| MachineError::Device(format!("{what}: {e}"));
        let serial_stdio = cfg.serial.as_ref().is_some_and(|s| s.stdio);
        let out: Box<dyn Write + Send> = if serial_stdio {
            Box::new(devices::legacy::serial::Unbuffered(std::io::stdout()))
        } else {
            Box::new(std::io::sink())
        };
        let mut pio = Bus::new();
        let legacy = crate::legacy::attach_legacy_devices(&vm, &mut pio, out, start)
            .map_err(MachineError::Device)?;
        let panic = Arc::new(PanicNotifier::new().map_err(|e| dev_err("pvpanic", &e))?);
        pio.insert(
            Arc::new(Mutex::new(PvPanic::new(panic.clone()))),
            PVPANIC_PORT,
            1,
        )
        .map_err(|e| dev_err("pvpanic", &e))?;
        let mut mmio = Bus::new();
        let mut slots = SlotTable::default();
        let mut slot_ids =
            crate::attach::attach_disk_slots(&mut slots, &vm, &mem, &mut mmio, &cfg.drives)
                .map_err(MachineError::Device)?;
        slot_ids.extend(
            crate::attach::attach_nic_slots(&mut slots, &vm, &mem, &mut mmio, &cfg.nets, host.nics)
                .map_err(MachineError::Device)?,
        );
        let virtio_cmdline = slots.cmdline_entries();

        // Kernel, command line, initrd and boot tables.
        let k = kernel::load_kernel(&mem, &cfg.boot.kernel)?;
        let cmdline = kernel_cmdline(cfg, &virtio_cmdline);
        if cmdline.len() >= CMDLINE_MAX_SIZE {
            return Err(MachineError::CmdlineTooLong(cmdline.len()));
        }
        let boot_err = |e: vm_memory::GuestMemoryError| MachineError::BootData(e.to_string());
        let mut cbytes = cmdline.clone().into_bytes();
        cbytes.push(0);
        mem.write_slice(&cbytes, GuestAddress(CMDLINE_START))
            .map_err(boot_err)?;
        let initrd = match &cfg.boot.initrd {
            Some(p) => Some(kernel::load_initrd(
                &mem,
                p,
                k.end,
                params::initrd_addr_max(k.setup_header.as_ref()),
            )?),
            None => None,
        };
        let e820 = memory::e820_map(cfg.machine.mem_size);
        let zero_page = params::build(&params::BootParamsInput {
            header: k.setup_header,
            cmdline_addr: CMDLINE_START,
            cmdline_size: cbytes.len() as u32,
            initrd,
            e820: &e820,
        });
        mem.write_obj(zero_page, GuestAddress(ZERO_PAGE_START))
            .map_err(boot_err)?;
        // BIOS data area: EBDA segment and base memory size in KiB, where Linux reads them.
        mem.write_obj((EBDA_START >> 4) as u16, GuestAddress(0x40e))
            .map_err(boot_err)?;
        mem.write_obj((EBDA_START >> 10) as u16, GuestAddress(0x413))
            .map_err(boot_err)?;
        let topology = cfg.machine.topology();
        // Validation keeps every APIC id below the IOAPIC's and the broadcast id.
        let apic_ids: Vec<u8> = (0..u32::from(cfg.machine.vcpus))
            .map(|i| topology.apic_id(i) as u8)
            .collect();
        let mp = mptable::build(EBDA_START, &apic_ids);
        mem.write_slice(&mp, GuestAddress(EBDA_START))
            .map_err(boot_err)?;
        regs::write_boot_tables(&mem).map_err(boot_err)?;
        log::info!(
            "kernel {} ({:?}) entry 0x{:x}, cmdline \"{}\"",
            cfg.boot.kernel.display(),
            k.format,
            k.entry,
            cmdline
        );

        // vCPUs.
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("get supported CPUID"))?;
        let brand = cpuid::host_brand_string();
        let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
        let msrs = regs::msrs(&regs::boot_msrs())
            .map_err(|e| MachineError::Device(format!("MSR list: {e:?}")))?;
        let pio = Arc::new(pio);
        let mmio = Arc::new(mmio);
        let control = Arc::new(VcpuControl::default());
        let exit = Arc::new(ExitNotifier::new().map_err(|e| dev_err("exit event", &e))?);
        let mut vcpus = Vec::new();
        for id in 0..cfg.machine.vcpus {
            // KVM's vCPU id is the in-kernel LAPIC's APIC id.
            let fd = vm
                .create_vcpu(u64::from(apic_ids[usize::from(id)]))
                .map_err(kvm_err("create vCPU"))?;
            let mut c = supported.clone();
            let identity = cpuid::CpuIdentity {
                index: u32::from(id),
                topology,
            };
            cpuid::filter(&mut c, identity, &brand);
            if tsc_deadline {
                cpuid::offer_tsc_deadline(&mut c);
            }
            fd.set_cpuid2(&c).map_err(kvm_err("set CPUID"))?;
            let n = fd.set_msrs(&msrs).map_err(kvm_err("set MSRs"))?;
            if n != msrs.as_slice().len() {
                log::warn!(
                    "vCPU {id}: KVM accepted {n} of {} boot MSRs",
                    msrs.as_slice().len()
                );
            }
            fd.set_fpu(&regs::initial_fpu())
                .map_err(kvm_err("set FPU"))?;
            let mut lapic = fd.get_lapic().map_err(kvm_err("get LAPIC"))?;
            regs::set_lint(&mut lapic);
            fd.set_lapic(&lapic).map_err(kvm_err("set LAPIC"))?;
            if id == 0 {
                let sregs = fd.get_sregs().map_err(kvm_err("get sregs"))?;
                fd.set_sregs(&regs::long_mode_sregs(sregs))
                    .map_err(kvm_err("set sregs"))?;
                fd.set_regs(&regs::entry_regs(k.entry))
                    .map_err(kvm_err("set regs"))?;
            }
            vcpus.push(Vcpu {
                id,
                fd,
                pio: pio.clone(),
                mmio: mmio.clone(),
                mem: mem.clone(),
                control: control.clone(),
                shared: Arc::new(VcpuShared::default()),
                exit: exit.clone(),
                panic: panic.clone(),
            });
        }
        Ok(Machine {
            _kvm: kvm,
            _vm: vm,
            mem,
            vcpus,
            control,
            legacy,
            panic,
            serial_stdio,
            exit,
            events: None,
            slots,
            slot_ids,
        })
    }

    /// The virtio slots and their boot devices (for hot-plug).
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
