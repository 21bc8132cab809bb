//! The x86_64 microvm guest physical memory map.
//!
//! ```text
//! 0x0000_0500  GDT                  0x0000_7000  boot_params (zero page)
//! 0x0000_8ff0  boot stack top       0x0000_9000  PML4, PDPT at 0xa000, PD at 0xb000
//! 0x0002_0000  kernel command line  0x0009_fc00  EBDA: MP table
//! 0x0010_0000  high memory          0x0100_0000  kernel (raw vmlinux.bin entry)
//! 0xc000_0000  MMIO hole (1 GiB): virtio-mmio at 0xd000_0000, IOAPIC, LAPIC, TSS
//! 0x1_0000_0000  RAM above 4 GiB
//! ```

pub const BOOT_GDT_START: u64 = 0x500;
pub const BOOT_IDT_START: u64 = 0x520;
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
pub const CMDLINE_START: u64 = 0x20000;
/// Room for the command line, NUL included.
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// Extended BIOS data area; the MP floating pointer and table live at its start.
pub const EBDA_START: u64 = 0x9fc00;
pub const HIMEM_START: u64 = 0x10_0000;
/// Where a raw `vmlinux.bin` is loaded and entered, as with a 64-bit boot of Linux.
pub const KERNEL_START: u64 = 0x100_0000;

pub const MMIO_HOLE_START: u64 = 0xc000_0000;
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// First virtio-mmio transport window; each takes [`VIRTIO_MMIO_SIZE`].
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
pub const APIC_ADDR: u64 = 0xfee0_0000;
/// KVM's TSS (three pages) and identity-map page, at the top of the hole.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
pub const KVM_IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// Highest guest RAM the microvm supports (512 GiB, plus what the hole displaces).
pub const MAX_MEM_SIZE: u64 = 512 << 30;

/// The IOAPIC pins of the legacy devices: the i8042's keyboard and aux ports, the UART at
/// 0x3f8, the CMOS RTC.
pub const I8042_KBD_IRQ: u32 = 1;
pub const SERIAL_IRQ: u32 = 4;
pub const RTC_IRQ: u32 = 8;
pub const I8042_AUX_IRQ: u32 = 12;
/// The IRQs of the virtio-mmio transports, in slot order: the ISA lines no legacy device of the
/// microvm uses (0 is the PIT, 2 the cascade; 1, 4, 8 and 12 are above), so every one of them
/// is an ordinary edge-triggered ISA interrupt to any guest.
pub const VIRTIO_IRQS: [u32; 10] = [5, 6, 7, 9, 10, 11, 14, 15, 13, 3];
/// Number of IOAPIC pins (KVM's in-kernel IOAPIC has 24).
pub const IOAPIC_PINS: u32 = 24;
