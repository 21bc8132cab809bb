//! The kernel's own identity map: all RAM from the e820 map plus the whole
//! 0..4 GiB range (MMIO lives below 4 GiB), with 1 GiB pages when CPUID says
//! the CPU has them, else 2 MiB pages.
//!
//! Only the tables actually used are written (every entry of each), so the
//! cost is about 3 instructions per 2 MiB of address space. The building
//! itself is `testkernel::pagetable` (unit tested on the host).

use core::ptr::addr_of_mut;

use testkernel::pagetable::{self, Table, GIB, PAGE_2M};

use crate::cpu;
use crate::phys;

/// Page directories available for 2 MiB mappings: 512 GiB of address space
/// (the most RAM the VMM accepts), 2 MiB of tables that are only written as
/// far as RAM goes.
pub const MAX_PDS: usize = 512;

#[repr(C, align(4096))]
struct Tables {
    pml4: Table,
    pdpt: Table,
    pds: [Table; MAX_PDS],
}

#[link_section = ".bss.noinit.page_tables"]
static mut TABLES: Tables = Tables {
    pml4: Table::zeroed(),
    pdpt: Table::zeroed(),
    pds: [const { Table::zeroed() }; MAX_PDS],
};

/// What `init` built.
#[derive(Clone, Copy, Debug)]
pub struct MapInfo {
    /// Page size used (1 GiB or 2 MiB).
    pub page_size: u64,
    /// End of the identity map.
    pub limit: u64,
    /// RAM above `limit` that could not be mapped (0 normally).
    pub unmapped_ram: u64,
    /// Physical address of the PML4 (CR3).
    pub cr3: u64,
}

/// Does the CPU support 1 GiB pages (CPUID 0x80000001 EDX bit 26)?
pub fn has_gb_pages() -> bool {
    let (max_ext, _, _, _) = cpu::cpuid(0x8000_0000);
    max_ext >= 0x8000_0001 && cpu::cpuid(0x8000_0001).3 & (1 << 26) != 0
}

/// Builds the identity map up to at least 4 GiB and `ram_end`, loads it and
/// records the mapped limit. `allow_gb` lets 1 GiB pages be used.
pub fn init(ram_end: u64, allow_gb: bool) -> MapInfo {
    let gb_pages = allow_gb && has_gb_pages();
    let gibs = pagetable::gibs_to_map(ram_end, gb_pages, MAX_PDS);
    // SAFETY: TABLES is only written here, on the boot CPU, before any other
    // CPU runs; the current CR3 does not point into it (the Linux path uses
    // the loader's tables, the PVH path the separate boot tables), so
    // rewriting it cannot unmap anything in use.
    let tables = unsafe { &mut *addr_of_mut!(TABLES) };
    let phys = |t: &Table| t as *const Table as u64;
    pagetable::build_identity(
        &mut tables.pml4,
        &mut tables.pdpt,
        &mut tables.pds,
        gibs,
        gb_pages,
        phys,
    );
    let cr3 = phys(&tables.pml4);
    // SAFETY: the new tables identity-map 0..4 GiB and all RAM (up to the
    // limits above); the kernel, its stacks and the loader's structures lie
    // below 4 GiB, so everything in use stays mapped at the same address.
    unsafe { cpu::write_cr3(cr3) };
    let limit = gibs * GIB;
    phys::set_mapped_limit(limit);
    MapInfo {
        page_size: if gb_pages { GIB } else { PAGE_2M },
        limit,
        unmapped_ram: ram_end.saturating_sub(limit),
        cr3,
    }
}
