//! Booting and restoring a machine: two recipes made of the same small steps.
//!
//! ```text
//! boot:     create_vm  fresh memory     legacy devices   virtio slots   load kernel   vCPUs at the entry point
//! restore:  create_vm  memory file COW  legacy (state)   slots (state)  VM state      vCPUs (state)
//! ```

use crate::attach::{attach_disk_slots, attach_nic_slots, HostResources};
use crate::boot::{cpuid, kernel, mptable, params, regs};
use crate::coalesced::CoalescedRing;
use crate::exit::ExitNotifier;
use crate::hotplug::BootDevice;
use crate::layout::*;
use crate::memory;
use crate::slots::SlotTable;
use crate::snapshot::state::{memory_layout, ConfigIdentity};
use crate::snapshot::vcpu::VcpuState;
use crate::snapshot::{MachineState, SnapshotSource};
use crate::vcpu::{Vcpu, VcpuControl, VcpuShared};
use crate::vm::{kernel_cmdline, Machine, MachineError};
use config::VmConfig;
use devices::pvpanic::{PanicNotifier, PvPanic, PVPANIC_PORT};
use devices::Bus;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};
use snapshot::{Header, SnapshotDir};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> MachineError {
    move |err| MachineError::Kvm { what, err }
}

fn dev_err(what: &str, e: &dyn std::fmt::Display) -> MachineError {
    MachineError::Device(format!("{what}: {e}"))
}

/// The VM, without its irqchip yet (see [`create_irqchip`]).
fn create_vm(kvm: &Kvm) -> Result<VmFd, MachineError> {
    let vm = kvm.create_vm().map_err(kvm_err("create VM"))?;
    vm.set_tss_address(KVM_TSS_ADDR as usize)
        .map_err(kvm_err("set TSS address"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDR)
        .map_err(kvm_err("set identity map address"))?;
    Ok(vm)
}

/// The in-kernel irqchip and PIT, created after the memory slots: once a VM has an irqchip,
/// each memory slot it is given costs the kernel about 7 ms here (0.4 ms before; measured with
/// the ioctls alone, any slot size), which was most of a restore.
fn create_irqchip(vm: &VmFd) -> Result<(), MachineError> {
    vm.create_irq_chip().map_err(kvm_err("create irqchip"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("create PIT"))?;
    Ok(())
}

/// Registers every guest RAM region with KVM.
fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap, cfg: &VmConfig) -> Result<(), MachineError> {
    if cfg.machine.omit_vm_memory {
        memory::exclude_from_core_dumps(mem).map_err(MachineError::Memory)?;
    }
    for (slot, region) in mem.iter().enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().raw_value(),
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
        };
        // SAFETY: the host range is a live mapping owned by `mem`, which the Machine keeps for
        // as long as the VM exists; slots don't overlap.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm_err("register guest memory"))?;
    }
    Ok(())
}

/// Where the UART's output goes.
fn serial_out(cfg: &VmConfig) -> Box<dyn Write + Send> {
    if cfg.serial.as_ref().is_some_and(|s| s.stdio) {
        Box::new(devices::legacy::serial::Unbuffered(std::io::stdout()))
    } else {
        Box::new(std::io::sink())
    }
}

/// Kernel, command line, initrd, zero page, BIOS data area, MP table and boot page tables;
/// returns the kernel's entry point.
fn load_boot(
    cfg: &VmConfig,
    mem: &GuestMemoryMmap,
    slots: &SlotTable,
) -> Result<u64, MachineError> {
    let k = kernel::load_kernel(mem, &cfg.boot.kernel)?;
    let cmdline = kernel_cmdline(cfg, &slots.cmdline_entries());
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
            mem,
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
    let mp = mptable::build(EBDA_START, &apic_ids(cfg));
    mem.write_slice(&mp, GuestAddress(EBDA_START))
        .map_err(boot_err)?;
    regs::write_boot_tables(mem).map_err(boot_err)?;
    log::info!(
        "kernel {} ({:?}) entry 0x{:x}, cmdline \"{}\"",
        cfg.boot.kernel.display(),
        k.format,
        k.entry,
        cmdline
    );
    Ok(k.entry)
}

/// The APIC id of every vCPU (validation keeps them below the IOAPIC's and the broadcast id).
fn apic_ids(cfg: &VmConfig) -> Vec<u8> {
    let topology = cfg.machine.topology();
    (0..u32::from(cfg.machine.vcpus))
        .map(|i| topology.apic_id(i) as u8)
        .collect()
}

/// How vCPUs start: at the kernel's entry point, or where a snapshot left them.
enum VcpuStart<'a> {
    Boot { entry: u64 },
    Restore(&'a [VcpuState]),
}

/// What every vCPU shares.
struct VcpuWiring {
    pio: Arc<Bus>,
    mmio: Arc<Bus>,
    control: Arc<VcpuControl>,
    exit: Arc<ExitNotifier>,
    panic: Arc<PanicNotifier>,
    msr_indices: Arc<Vec<u32>>,
}

/// Creates the vCPUs with their CPUID, and their registers for `start`.
fn create_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    cfg: &VmConfig,
    mem: &GuestMemoryMmap,
    w: &VcpuWiring,
    start: VcpuStart,
) -> Result<Vec<Vcpu>, MachineError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("get supported CPUID"))?;
    let brand = cpuid::host_brand_string();
    let tsc_deadline = kvm.check_extension(kvm_ioctls::Cap::TscDeadlineTimer);
    let boot_msrs =
        regs::msrs(&regs::boot_msrs()).map_err(|e| dev_err("MSR list", &format!("{e:?}")))?;
    let topology = cfg.machine.topology();
    let apic_ids = apic_ids(cfg);
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
        match &start {
            VcpuStart::Boot { entry } => {
                let n = fd.set_msrs(&boot_msrs).map_err(kvm_err("set MSRs"))?;
                if n != boot_msrs.as_slice().len() {
                    log::warn!(
                        "vCPU {id}: KVM accepted {n} of {} boot MSRs",
                        boot_msrs.as_slice().len()
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
                    fd.set_regs(&regs::entry_regs(*entry))
                        .map_err(kvm_err("set regs"))?;
                }
            }
            VcpuStart::Restore(states) => states[usize::from(id)]
                .restore(&fd)
                .map_err(|e| MachineError::Snapshot(format!("vCPU {id}: {e}")))?,
        }
        vcpus.push(Vcpu {
            id,
            fd,
            pio: w.pio.clone(),
            mmio: w.mmio.clone(),
            mem: mem.clone(),
            control: w.control.clone(),
            shared: Arc::new(VcpuShared::default()),
            exit: w.exit.clone(),
            panic: w.panic.clone(),
            msr_indices: w.msr_indices.clone(),
            coalesced: None,
        });
    }
    coalesce_ports(kvm, vm, &mut vcpus)?;
    Ok(vcpus)
}

/// Lets KVM record the writes of the ports that only latch a value (the RTC's index) instead of
/// exiting, each vCPU replaying them before it handles an exit.
fn coalesce_ports(kvm: &Kvm, vm: &VmFd, vcpus: &mut [Vcpu]) -> Result<(), MachineError> {
    let Some(first) = vcpus.first() else {
        return Ok(());
    };
    let ring = CoalescedRing::attach(kvm, vm, &first.fd, crate::legacy::COALESCED_PORTS)
        .map_err(|e| dev_err("coalesced ports", &e))?
        .map(Arc::new);
    for v in vcpus {
        v.coalesced = ring.clone();
    }
    Ok(())
}

/// Everything both recipes build the same way, from `kvm` and a created VM onwards.
struct Parts {
    pio: Bus,
    mmio: Bus,
    legacy: crate::legacy::LegacyDevices,
    panic: Arc<PanicNotifier>,
    slots: SlotTable,
    slot_ids: Vec<Option<BootDevice>>,
    balloon: Option<devices::virtio::balloon::BalloonHandle>,
}

/// The snapshot's state for the next slot, where a fixed device (`what`) goes on restore.
fn next_saved_slot<'a>(
    restore: Option<&'a MachineState>,
    slots: &SlotTable,
    what: &str,
) -> Result<Option<&'a crate::snapshot::SlotState>, MachineError> {
    let Some(state) = restore else {
        return Ok(None);
    };
    state
        .slots
        .get(slots.slots().len())
        .map(Some)
        .ok_or_else(|| {
            MachineError::Snapshot(format!(
                "the snapshot has {} virtio devices and no {what}",
                state.slots.len()
            ))
        })
}

fn attach_devices(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    cfg: &VmConfig,
    start: Instant,
    host: HostResources,
    restore: Option<&MachineState>,
) -> Result<Parts, MachineError> {
    let mut pio = Bus::new();
    let legacy = crate::legacy::attach_legacy_devices(
        vm,
        &mut pio,
        serial_out(cfg),
        start,
        restore.map(|s| &s.legacy),
    )
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
    let saved = restore.map(|s| s.slots.as_slice());
    let step_err = |e| match restore {
        Some(_) => MachineError::Snapshot(e),
        None => MachineError::Device(e),
    };
    let mut slot_ids =
        attach_disk_slots(&mut slots, vm, mem, &mut mmio, &cfg.drives, saved).map_err(step_err)?;
    slot_ids.extend(
        attach_nic_slots(&mut slots, vm, mem, &mut mmio, &cfg.nets, host.nics, saved)
            .map_err(step_err)?,
    );
    // The other devices after the disk and NIC slots.
    if let Some(console) = &cfg.console {
        let saved = next_saved_slot(restore, &slots, "console")?;
        let id = crate::attach::attach_console(&mut slots, vm, mem, &mut mmio, console, saved)
            .map_err(step_err)?;
        slot_ids.push(Some(BootDevice::same(&id)));
    }
    if let Some(vsock) = &cfg.vsock {
        let saved = next_saved_slot(restore, &slots, "vsock")?;
        let id = crate::attach::attach_vsock(
            &mut slots,
            vm,
            mem,
            &mut mmio,
            vsock,
            host.vhost_vsock,
            saved,
        )
        .map_err(step_err)?;
        slot_ids.push(Some(BootDevice::same(&id)));
    }
    let balloon = match &cfg.balloon {
        Some(b) => {
            let saved = restore.map(|s| s.slots.as_slice());
            let handle = crate::attach::attach_balloon(&mut slots, vm, mem, &mut mmio, b, saved)
                .map_err(step_err)?;
            slot_ids.push(b.id.as_deref().map(BootDevice::same));
            Some(handle)
        }
        None => None,
    };
    if let Some(state) = restore {
        if state.slots.len() != slots.slots().len() {
            return Err(MachineError::Snapshot(format!(
                "the snapshot has {} virtio devices, the configuration {}",
                state.slots.len(),
                slots.slots().len()
            )));
        }
    }
    Ok(Parts {
        pio,
        mmio,
        legacy,
        panic,
        slots,
        slot_ids,
        balloon,
    })
}

/// The MSRs a snapshot of this machine saves.
fn msr_indices(kvm: &Kvm) -> Result<Vec<u32>, MachineError> {
    Ok(kvm
        .get_msr_index_list()
        .map_err(kvm_err("get MSR index list"))?
        .as_slice()
        .to_vec())
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    kvm: Kvm,
    vm: VmFd,
    cfg: &VmConfig,
    mem: GuestMemoryMmap,
    template: Option<Arc<File>>,
    parts: Parts,
    start: VcpuStart,
) -> Result<Machine, MachineError> {
    let Parts {
        pio,
        mmio,
        legacy,
        panic,
        slots,
        slot_ids,
        balloon,
    } = parts;
    let wiring = VcpuWiring {
        pio: Arc::new(pio),
        mmio: Arc::new(mmio),
        control: Arc::new(VcpuControl::default()),
        exit: Arc::new(ExitNotifier::new().map_err(|e| dev_err("exit event", &e))?),
        panic: panic.clone(),
        msr_indices: Arc::new(msr_indices(&kvm)?),
    };
    let vcpus = create_vcpus(&kvm, &vm, cfg, &mem, &wiring, start)?;
    let vm = Arc::new(vm);
    let snapshot = Arc::new(SnapshotSource {
        vm: vm.clone(),
        mem: mem.clone(),
        template,
        serial: legacy.serial.clone(),
        i8042: legacy.i8042.clone(),
        rtc: legacy.rtc.clone(),
        slots: slots.clone(),
        config: ConfigIdentity::of(cfg),
        mem_size: cfg.machine.mem_size,
    });
    Ok(Machine::assembled(crate::vm::MachineParts {
        kvm,
        vm,
        mem,
        vcpus,
        control: wiring.control,
        legacy,
        panic,
        serial_stdio: cfg.serial.as_ref().is_some_and(|s| s.stdio),
        exit: wiring.exit,
        slots,
        slot_ids,
        snapshot,
        balloon,
    }))
}

impl Machine {
    /// Boots: creates the VM, its memory, devices (with the NICs' TAPs `host` opened) and vCPUs,
    /// and loads the kernel.
    pub fn build(
        cfg: &VmConfig,
        start: Instant,
        host: HostResources,
    ) -> Result<Machine, MachineError> {
        let kvm = Kvm::new().map_err(MachineError::KvmOpen)?;
        let vm = create_vm(&kvm)?;
        let mem =
            memory::create_guest_memory(cfg.machine.mem_size).map_err(MachineError::Memory)?;
        register_memory(&vm, &mem, cfg)?;
        create_irqchip(&vm)?;
        let parts = attach_devices(&vm, &mem, cfg, start, host, None)?;
        let entry = load_boot(cfg, &mem, &parts.slots)?;
        assemble(kvm, vm, cfg, mem, None, parts, VcpuStart::Boot { entry })
    }

    /// Restores the snapshot in `dir` with configuration `cfg` (which must describe the same
    /// machine): guest memory is the snapshot's memory file mapped copy-on-write, nothing is
    /// read up front, and no kernel is loaded. `host` holds the NICs' TAPs, opened again.
    pub fn restore(
        cfg: &VmConfig,
        start: Instant,
        dir: &Path,
        host: HostResources,
    ) -> Result<Machine, MachineError> {
        let snap_err = |e: &dyn std::fmt::Display| MachineError::Snapshot(e.to_string());
        let step =
            |what: &str| log::debug!("restore: {what} at {} us", start.elapsed().as_micros());
        step("begin");
        let dir = SnapshotDir::new(dir).map_err(|e| snap_err(&e))?;
        let body = dir
            .read_state(&Header::this_host())
            .map_err(|e| snap_err(&e))?;
        let state: MachineState = serde_json::from_slice(&body).map_err(|e| {
            snap_err(&format!(
                "{}: unreadable state ({e})",
                dir.state_path().display()
            ))
        })?;
        state.check(cfg).map_err(|e| snap_err(&e))?;
        let file = dir
            .open_memory(state.memory_size())
            .map_err(|e| snap_err(&e))?;
        step("state loaded");
        let kvm = Kvm::new().map_err(MachineError::KvmOpen)?;
        let vm = create_vm(&kvm)?;
        step("VM created");
        let mem = memory::map_snapshot_memory(&file, &memory_layout(cfg.machine.mem_size))
            .map_err(MachineError::Memory)?;
        register_memory(&vm, &mem, cfg)?;
        create_irqchip(&vm)?;
        step("memory registered");
        state.vm.restore(&vm).map_err(|e| snap_err(&e))?;
        let parts = attach_devices(&vm, &mem, cfg, start, host, Some(&state))?;
        step("devices attached");
        let machine = assemble(
            kvm,
            vm,
            cfg,
            mem,
            Some(Arc::new(file)),
            parts,
            VcpuStart::Restore(&state.vcpus),
        )?;
        log::info!(
            "restored from {} in {} us since start",
            dir.path.display(),
            start.elapsed().as_micros()
        );
        Ok(machine)
    }
}
