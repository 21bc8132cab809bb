//! Application processors: the real-mode trampoline (copied below 1 MiB),
//! the 32-bit to long-mode path that reuses the boot CPU's page tables, and
//! INIT-SIPI-SIPI bring-up with bounded waits.
//!
//! Each AP takes the next CPU index with an atomic add, runs on its own
//! stack, loads the GDT/TSS/IDT, enables its LAPIC, counts itself online and
//! parks in a `cli; hlt` loop.

use core::arch::global_asm;
use core::ptr::addr_of;
use core::sync::atomic::{AtomicU32, Ordering};

use testkernel::e820::{self, E820Entry};
use testkernel::topology::Topology;

use crate::entry::Stack;
use crate::{apic, cpu, gdt, idt};

/// Most CPUs started (the boot CPU included): every xAPIC id but the
/// broadcast id 0xff.
pub const MAX_CPUS: usize = 255;
/// Where the trampoline is copied: a page of base memory (SIPI vector 0x08).
pub const TRAMPOLINE_ADDR: u64 = 0x8000;
/// Stack size of each application processor.
pub const AP_STACK_SIZE: usize = 8 * 1024;

/// Spins (each a load, compare and `pause`) to wait for the APs after the
/// first and after the second STARTUP IPI. Guest code is emulated at a few
/// million instructions per second, so these are roughly 0.2 s and 1 s.
const FIRST_WAIT_SPINS: u32 = 150_000;
const SECOND_WAIT_SPINS: u32 = 750_000;
/// Spins between INIT and the first STARTUP IPI.
const INIT_DELAY_SPINS: u32 = 1_000;

/// Physical address of the PML4 the APs load (set by the boot CPU).
static AP_CR3: AtomicU32 = AtomicU32::new(0);
/// Next CPU index handed out to an AP (the boot CPU is 0).
static AP_NEXT_INDEX: AtomicU32 = AtomicU32::new(1);
/// APs that reached `ap_main`.
static AP_ONLINE: AtomicU32 = AtomicU32::new(0);

#[link_section = ".bss.noinit.ap_stacks"]
static mut AP_STACKS: [Stack<AP_STACK_SIZE>; MAX_CPUS - 1] =
    [const { Stack([0; AP_STACK_SIZE]) }; MAX_CPUS - 1];

global_asm!(
    r#"
    /* Real-mode trampoline: copied to {tramp}; CS = {tramp} >> 4, IP = 0. */
    .section .rodata.trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_tramp_gdtr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $({tramp} + ap_tramp_pm32 - ap_trampoline_start)
    .code32
ap_tramp_pm32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $ap_entry32, %eax
    jmpl *%eax
    .balign 8
ap_tramp_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
ap_tramp_gdtr:
    .word 23
    .long {tramp} + ap_tramp_gdt - ap_trampoline_start
    .global ap_trampoline_end
ap_trampoline_end:

    /* 32-bit protected mode, flat segments, paging off. */
    .text
    .code32
ap_entry32:
    movl %cr4, %eax
    orl $0x20, %eax              /* CR4.PAE */
    movl %eax, %cr4
    movl {cr3}, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx       /* EFER */
    rdmsr
    orl $0x100, %eax             /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax        /* CR0.PG | CR0.PE */
    movl %eax, %cr0
    lgdtl boot_gdtr
    ljmpl $0x08, $ap_entry64
    .code64
ap_entry64:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    lock xaddl %eax, {next}(%rip)
    cmpl ${max_cpus}, %eax
    jae 2f
    movl %eax, %edi
    movl %eax, %eax
    imulq ${stack_size}, %rax
    leaq {stacks}(%rip), %rsp
    addq %rax, %rsp
    call {main}
2:
    cli
    hlt
    jmp 2b
"#,
    tramp = const TRAMPOLINE_ADDR,
    cr3 = sym AP_CR3,
    next = sym AP_NEXT_INDEX,
    max_cpus = const MAX_CPUS,
    stack_size = const AP_STACK_SIZE,
    stacks = sym AP_STACKS,
    main = sym ap_main,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// First code an AP runs in Rust. `index` >= 1 is its CPU number; its stack
/// top is `AP_STACKS[index - 1]`'s end (set up by `ap_entry64`).
extern "C" fn ap_main(index: u32) -> ! {
    gdt::load(index as usize);
    idt::load();
    apic::init_cpu();
    AP_ONLINE.fetch_add(1, Ordering::AcqRel);
    cpu::halt_forever()
}

/// Outcome of AP bring-up.
#[derive(Clone, Copy, Debug, Default)]
pub struct StartReport {
    /// APs the tables listed (enabled, not the boot CPU).
    pub targets: u32,
    /// APs that came online.
    pub online: u32,
    /// APs not started: index beyond MAX_CPUS, or APIC id not addressable.
    pub skipped: u32,
    /// Whether the second STARTUP IPI round was needed.
    pub second_sipi: bool,
}

/// CPUs online, the boot CPU included.
pub fn cpus_online() -> u32 {
    1 + AP_ONLINE.load(Ordering::Acquire)
}

/// Why APs could not be started at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// The trampoline page is not usable RAM.
    NoTrampolinePage,
}

fn ap_ids(topo: &Topology, bsp_id: u32) -> impl Iterator<Item = u32> + '_ {
    topo.enabled_cpus()
        .map(|c| c.apic_id)
        .filter(move |&id| id != bsp_id && id < 0xff)
        .take(MAX_CPUS - 1)
}

fn wait_online(want: u32, spins: u32) -> bool {
    for _ in 0..spins {
        if AP_ONLINE.load(Ordering::Acquire) >= want {
            return true;
        }
        cpu::pause();
    }
    AP_ONLINE.load(Ordering::Acquire) >= want
}

/// Starts every enabled AP of `topo` with INIT-SIPI(-SIPI). `cr3` is the
/// boot CPU's PML4, which the APs load too. Boot CPU only, once.
pub fn start_aps(
    topo: &Topology,
    memmap: &[E820Entry],
    cr3: u64,
) -> Result<StartReport, StartError> {
    let bsp_id = apic::id();
    let mut report = StartReport {
        targets: ap_ids(topo, bsp_id).count() as u32,
        skipped: topo
            .enabled_cpus()
            .filter(|c| c.apic_id != bsp_id)
            .count()
            .saturating_sub(MAX_CPUS - 1) as u32,
        ..StartReport::default()
    };
    report.skipped += topo.cpus_dropped as u32;
    if report.targets == 0 {
        return Ok(report);
    }
    if !e820::is_usable(memmap, TRAMPOLINE_ADDR, 4096) {
        return Err(StartError::NoTrampolinePage);
    }
    let (start, end) = (
        addr_of!(ap_trampoline_start) as usize,
        addr_of!(ap_trampoline_end) as usize,
    );
    // SAFETY: the trampoline page is usable RAM (checked above) that nothing
    // else uses once the firmware tables have been read (they already have);
    // the source is the trampoline code in the kernel image.
    unsafe {
        core::ptr::copy_nonoverlapping(start as *const u8, TRAMPOLINE_ADDR as *mut u8, end - start);
    }
    AP_CR3.store(cr3 as u32, Ordering::Release);
    let page = (TRAMPOLINE_ADDR >> 12) as u8;
    for id in ap_ids(topo, bsp_id) {
        apic::send_init(id);
    }
    for _ in 0..INIT_DELAY_SPINS {
        cpu::pause();
    }
    for id in ap_ids(topo, bsp_id) {
        apic::send_startup(id, page);
    }
    if !wait_online(report.targets, FIRST_WAIT_SPINS) {
        // A second STARTUP IPI, as the MP spec asks; CPUs already running
        // ignore it.
        report.second_sipi = true;
        for id in ap_ids(topo, bsp_id) {
            apic::send_startup(id, page);
        }
        wait_online(report.targets, SECOND_WAIT_SPINS);
    }
    report.online = AP_ONLINE.load(Ordering::Acquire);
    Ok(report)
}
