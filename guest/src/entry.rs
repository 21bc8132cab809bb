//! Entry points, in assembly:
//!
//! - `_start` at the first byte of the image (0x1000000): the Linux 64-bit
//!   boot protocol (long mode, identity map of at least 1 GiB, `rsi` =
//!   `boot_params`);
//! - `pvh_start32`: the Xen PVH 32-bit entry named by the ELF note (protected
//!   mode, paging off, `ebx` = `hvm_start_info`). It maps the first 4 GiB with
//!   2 MiB pages, enables long mode and joins `_start`'s path.
//!
//! Both load a boot GDT (selector 0x08 = 64-bit code, 0x10 = data), switch to
//! the boot stack, zero `.bss` and call `kmain(protocol, info)`, protocol 0
//! for Linux and 1 for PVH. The same GDT and the long-mode switch serve the
//! application processors (see `smp.rs`).

use core::arch::global_asm;

/// Size of the boot CPU's stack.
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

/// The boot CPU's stack (not zeroed: it is in use while `.bss` is cleared).
#[repr(C, align(16))]
pub struct Stack<const N: usize>(pub [u8; N]);

#[link_section = ".bss.noinit.stack"]
#[no_mangle]
static mut BOOT_STACK: Stack<BOOT_STACK_SIZE> = Stack([0; BOOT_STACK_SIZE]);

/// Page tables of the PVH entry (PML4, PDPT, 4 PDs), filled in 32-bit code.
#[repr(C, align(4096))]
pub struct BootTables(pub [u8; 6 * 4096]);

#[link_section = ".bss.noinit.boot_pt"]
static mut BOOT_PT: BootTables = BootTables([0; 6 * 4096]);

global_asm!(
    r#"
    .section .text.entry, "ax"
    .code64
    .global _start
_start:
    cli
    cld
    xorl %edi, %edi
    jmp 50f

    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    movl %ebx, %esi
    /* Zero the six boot table pages. */
    movl ${boot_pt}, %edi
    movl $(6 * 1024), %ecx
    xorl %eax, %eax
    rep stosl
    /* PML4[0] -> PDPT; PDPT[0..4] -> PD0..PD3 (present, writable). */
    movl ${boot_pt}, %edi
    leal 0x1003(%edi), %eax
    movl %eax, (%edi)
    leal 0x2003(%edi), %eax
    movl %eax, 0x1000(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1008(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1010(%edi)
    addl $0x1000, %eax
    movl %eax, 0x1018(%edi)
    /* 2048 2 MiB pages: 0..4 GiB identity. */
    addl $0x2000, %edi
    movl $0x83, %eax
    movl $2048, %ecx
1:
    movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    decl %ecx
    jnz 1b
    movl ${boot_pt}, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax              /* CR4.PAE */
    movl %eax, %cr4
    movl $0xc0000080, %ecx       /* EFER */
    rdmsr
    orl $0x100, %eax             /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax        /* CR0.PG | CR0.PE */
    movl %eax, %cr0
    lgdtl boot_gdtr
    ljmpl $0x08, $2f
    .code64
2:
    movl %esi, %esi              /* zero-extend the start_info address */
    movl $1, %edi

    /* Common 64-bit path: rdi = protocol, rsi = boot info address. */
50:
    lgdtq boot_gdtr
    pushq $0x08
    leaq 3f(%rip), %rax
    pushq %rax
    lretq
3:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    leaq ({boot_stack} + {boot_stack_size})(%rip), %rsp
    movq %rdi, %r12
    movq %rsi, %r13
    leaq __bss_start(%rip), %rdi
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx
    xorl %eax, %eax
    rep stosq
    movq %r12, %rdi
    movq %r13, %rsi
    call {kmain}
4:
    cli
    hlt
    jmp 4b

    /* Boot GDT: null, 64-bit code (0x08), flat data (0x10). */
    .section .rodata.boot_gdt, "a"
    .balign 16
    .global boot_gdt
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
    .global boot_gdtr
boot_gdtr:
    .word 23
    .quad boot_gdt

    /* Xen PVH entry note: XEN_ELFNOTE_PHYS32_ENTRY (18). QEMU reads the
       descriptor as a pointer-sized value, so it is 8 bytes (like Linux). */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .text
"#,
    boot_pt = sym BOOT_PT,
    boot_stack = sym BOOT_STACK,
    boot_stack_size = const BOOT_STACK_SIZE,
    kmain = sym crate::kmain,
    options(att_syntax)
);
