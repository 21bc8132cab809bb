//! The test kernel: boots through the Linux 64-bit boot protocol (raw image)
//! or PVH (ELF), sets up its own GDT/IDT/page tables, starts every CPU,
//! routes the serial and virtio-mmio interrupts, prints `READY ...` and runs
//! a small shell on the serial port. See docs/testkernel.md.
#![no_std]
#![no_main]

mod apic;
mod boot;
mod cpu;
mod entry;
mod exceptions;
mod gdt;
mod hostile;
mod idt;
mod interrupts;
mod ioapic;
mod paging;
mod phys;
mod pic;
mod serial;
mod shell;
mod smp;
mod system;
mod virtio_balloon;
mod virtio_blk;
mod virtio_console;
mod virtio_mmio;
mod virtio_net;
mod virtio_vsock;
mod vq;

use testkernel::bootinfo::CMDLINE_MAX;
use testkernel::{cmdline, e820};

/// Port the VMM may watch for "boot finished" (like Firecracker's boot timer).
const READY_PORT: u16 = 0x03f0;
const READY_MAGIC: u8 = 123;

/// Common 64-bit entry, called by `entry.rs` with the protocol (0 Linux, 1
/// PVH) and the address of `boot_params` / `hvm_start_info`.
extern "C" fn kmain(protocol: u64, info: u64) -> ! {
    serial::init();
    // Own GDT/TSS/IDT first, so that even a fault while reading the boot
    // information is reported rather than a silent triple fault.
    gdt::init();
    gdt::load(0);
    idt::init();
    idt::load();
    let boot = match boot::read(protocol, info) {
        Ok(b) => b,
        Err(e) => fatal(boot::error_text(e)),
    };
    let memmap = boot.memmap.as_slice();
    // The command line decides the page size, so read it through the
    // loader's map if it can (else again after ours is up).
    let mut cmdline_buf = [0u8; CMDLINE_MAX];
    let mut cmdline_len = boot::read_cmdline(&boot, &mut cmdline_buf);
    let nogb = cmdline::params(&cmdline_buf[..cmdline_len]).any(|(n, _)| n == b"nogbpages");
    let map = paging::init(e820::ram_end(memmap), !nogb);
    if cmdline_len == 0 {
        cmdline_len = boot::read_cmdline(&boot, &mut cmdline_buf);
    }
    let cmdline = &cmdline_buf[..cmdline_len];

    virtio_mmio::init(cmdline::virtio_mmio_devices(cmdline));
    let topology = boot::topology(&boot, boot::table_choice(cmdline));

    pic::mask_all();
    apic::set_base(topology.lapic_addr);
    apic::init_cpu();
    let bsp_apic_id = apic::id();
    ioapic::init(&topology);
    let (serial_gsi, serial_flags) = ioapic::isa_gsi(&topology, serial::COM1_IRQ);
    route(serial_gsi, serial_flags, bsp_apic_id);
    interrupts::set_serial_gsi(serial_gsi);
    for dev in virtio_mmio::devices() {
        if dev.irq != serial_gsi {
            route(dev.irq, 0, bsp_apic_id);
        }
    }

    let smp = match smp::start_aps(&topology, memmap, map.cr3) {
        Ok(r) => r,
        Err(smp::StartError::NoTrampolinePage) => {
            serial::puts("warning: trampoline page is not usable RAM; APs not started\n");
            smp::StartReport::default()
        }
    };
    if smp.online < smp.targets {
        serial::puts("warning: ");
        serial::dec(u64::from(smp.targets - smp.online));
        serial::puts(" CPUs did not come online\n");
    }
    if map.unmapped_ram != 0 {
        serial::puts("warning: RAM above ");
        serial::hex(map.limit);
        serial::puts(" is not mapped\n");
    }

    apic::start_timer(interrupts::TIMER_VECTOR, apic::TIMER_COUNT_100HZ);
    serial::enable_rx_irq();
    virtio_blk::init(cmdline);
    virtio_net::init(cmdline);
    virtio_balloon::init(cmdline, memmap);
    virtio_console::init(cmdline);
    virtio_vsock::init();

    let usable = e820::usable_bytes(memmap);
    let virtio = virtio_mmio::devices().len() as u64;
    let mut stored_cmdline = [0u8; CMDLINE_MAX];
    stored_cmdline[..cmdline_len].copy_from_slice(cmdline);
    system::set(system::System {
        boot,
        cmdline: stored_cmdline,
        cmdline_len,
        topology,
        map,
        smp,
        bsp_apic_id,
        serial_gsi,
        usable,
    });

    cpu::outb(READY_PORT, READY_MAGIC);
    serial::puts("READY cpus=");
    serial::dec(u64::from(smp::cpus_online()));
    serial::puts(" mem=");
    serial::dec(usable);
    serial::puts(" virtio=");
    serial::dec(virtio);
    serial::puts("\n");
    shell::run()
}

/// Routes `gsi` to its vector on the boot CPU, warning if it cannot.
fn route(gsi: u32, flags: u16, dest: u32) {
    let routed = interrupts::gsi_vector(gsi)
        .map(|vector| ioapic::route(gsi, vector, dest, flags).is_ok())
        .unwrap_or(false);
    if !routed {
        serial::puts("warning: cannot route GSI ");
        serial::dec(u64::from(gsi));
        serial::puts("\n");
    }
}

fn fatal(msg: &str) -> ! {
    serial::puts("FATAL: ");
    serial::puts(msg);
    serial::puts("\n");
    cpu::panic_halt()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::fmt::Write;
    let _ = write!(serial::Writer, "\nPANIC: {info}\n");
    cpu::panic_halt()
}
