//! The kernel GDT: null, 64-bit code (0x08), data (0x10), then one 64-bit TSS
//! descriptor per CPU (0x18 + 16 * cpu). Each TSS points its IST slots at
//! that CPU's own stacks for #DF, NMI and #MC.

use core::arch::asm;
use core::ptr::{addr_of, addr_of_mut};

use crate::smp::MAX_CPUS;

/// Kernel code selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data selector.
pub const KERNEL_DS: u16 = 0x10;
const TSS_BASE_SELECTOR: u16 = 0x18;

/// IST index (1-based, as in IDT gates) of the #DF stack.
pub const IST_DOUBLE_FAULT: u8 = 1;
/// IST index of the NMI stack.
pub const IST_NMI: u8 = 2;
/// IST index of the #MC stack.
pub const IST_MACHINE_CHECK: u8 = 3;
const IST_COUNT: usize = 3;
/// Size of each IST stack.
pub const IST_STACK_SIZE: usize = 4096;

const GDT_ENTRIES: usize = 3 + 2 * MAX_CPUS;

/// 64-bit task state segment (only the IST slots are used).
#[repr(C, packed(4))]
#[derive(Clone, Copy)]
struct Tss {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

const TSS_SIZE: usize = core::mem::size_of::<Tss>();
const _: () = assert!(TSS_SIZE == 104);

#[repr(C, align(16))]
struct Gdt([u64; GDT_ENTRIES]);

#[repr(C, align(16))]
struct IstStacks([[[u8; IST_STACK_SIZE]; IST_COUNT]; MAX_CPUS]);

static mut GDT: Gdt = Gdt([0; GDT_ENTRIES]);
static mut TSS: [Tss; MAX_CPUS] = [Tss {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: 0,
}; MAX_CPUS];

#[link_section = ".bss.noinit.ist"]
static mut IST_STACKS: IstStacks = IstStacks([[[0; IST_STACK_SIZE]; IST_COUNT]; MAX_CPUS]);

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

/// Fills the GDT and every CPU's TSS. Boot CPU only, before `load`.
pub fn init() {
    let gdt = addr_of_mut!(GDT);
    let tss = addr_of_mut!(TSS);
    let ist = addr_of_mut!(IST_STACKS);
    // SAFETY: runs once on the boot CPU before any other CPU starts and
    // before any CPU has loaded this GDT, so nothing else accesses these.
    unsafe {
        (*gdt).0[0] = 0;
        (*gdt).0[1] = 0x00af_9a00_0000_ffff; // code: present, DPL0, L=1
        (*gdt).0[2] = 0x00cf_9200_0000_ffff; // data: present, writable
        for cpu in 0..MAX_CPUS {
            for slot in 0..IST_COUNT {
                let top = addr_of!((*ist).0[cpu][slot]) as u64 + IST_STACK_SIZE as u64;
                (*tss)[cpu].ist[slot] = top;
            }
            // No I/O permission bitmap: its base is beyond the limit.
            (*tss)[cpu].iomap_base = TSS_SIZE as u16;
            let base = addr_of!((*tss)[cpu]) as u64;
            let limit = (TSS_SIZE - 1) as u64;
            let low = (limit & 0xffff)
                | ((base & 0xff_ffff) << 16)
                | (0x89 << 40) // present, 64-bit TSS (available)
                | (((limit >> 16) & 0xf) << 48)
                | (((base >> 24) & 0xff) << 56);
            (*gdt).0[3 + 2 * cpu] = low;
            (*gdt).0[4 + 2 * cpu] = base >> 32;
        }
    }
}

/// Loads the GDT and CPU `cpu`'s TSS on the calling CPU and reloads the
/// segment registers.
pub fn load(cpu: usize) {
    let ptr = Pointer {
        limit: (GDT_ENTRIES * 8 - 1) as u16,
        base: addr_of!(GDT) as u64,
    };
    let tss_sel = TSS_BASE_SELECTOR + 16 * cpu as u16;
    // SAFETY: the GDT is initialised (`init`) and its code/data selectors are
    // the ones already in use (the boot GDT has the same layout), so
    // reloading CS/SS/DS keeps executing the same flat segments; the TSS
    // descriptor for `cpu` is unique to this CPU, so `ltr` finds it not busy.
    unsafe {
        asm!(
            "lgdt [{ptr}]",
            "push {cs}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {ds:x}",
            "mov es, {ds:x}",
            "mov ss, {ds:x}",
            "ltr {tss:x}",
            ptr = in(reg) &ptr,
            cs = const KERNEL_CS as u64,
            ds = in(reg) u64::from(KERNEL_DS),
            tss = in(reg) u64::from(tss_sel),
            tmp = out(reg) _,
        );
    }
}
