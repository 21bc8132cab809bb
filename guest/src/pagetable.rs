//! Building identity-mapping x86_64 page tables (4-level paging) with 1 GiB
//! or 2 MiB pages, and walking them (for tests and diagnostics).

/// Entry maps or points to something.
pub const PRESENT: u64 = 1;
/// Writable.
pub const WRITABLE: u64 = 1 << 1;
/// Large page (1 GiB in a PDPT, 2 MiB in a PD).
pub const HUGE: u64 = 1 << 7;
/// One GiB.
pub const GIB: u64 = 1 << 30;
/// One 2 MiB page.
pub const PAGE_2M: u64 = 2 << 20;
/// Address bits of an entry (bits 12-51).
pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// A page table: 512 entries, 4 KiB aligned.
#[repr(C, align(4096))]
#[derive(Clone)]
pub struct Table(pub [u64; 512]);

impl Table {
    /// An all-zero table.
    pub const fn zeroed() -> Self {
        Table([0; 512])
    }
}

/// GiB of address space to map: everything below 4 GiB and all RAM up to
/// `ram_end`, capped by what one PDPT covers (512 GiB, 1 GiB pages) or by
/// the page directories available (`max_pds` GiB, 2 MiB pages).
pub fn gibs_to_map(ram_end: u64, gb_pages: bool, max_pds: usize) -> u64 {
    let want = ram_end.max(4 * GIB).div_ceil(GIB);
    let cap = if gb_pages { 512 } else { max_pds as u64 };
    want.min(cap)
}

/// Fills `pml4`, `pdpt` and (for 2 MiB pages) the first `gibs` tables of
/// `pds` with an identity map of `[0, gibs GiB)`. `phys` gives a table's
/// physical address (the kernel runs identity mapped, so it is the table's
/// address). Every entry of every table used is written; nothing else is
/// touched, so the tables need no zeroing beforehand.
pub fn build_identity(
    pml4: &mut Table,
    pdpt: &mut Table,
    pds: &mut [Table],
    gibs: u64,
    gb_pages: bool,
    phys: impl Fn(&Table) -> u64,
) {
    let gibs = if gb_pages {
        gibs.min(512)
    } else {
        gibs.min(pds.len() as u64)
    };
    pml4.0.fill(0);
    pml4.0[0] = phys(pdpt) | PRESENT | WRITABLE;
    for (i, slot) in pdpt.0.iter_mut().enumerate() {
        let i = i as u64;
        *slot = if i >= gibs {
            0
        } else if gb_pages {
            (i * GIB) | PRESENT | WRITABLE | HUGE
        } else {
            let pd = &mut pds[i as usize];
            let mut entry = (i * GIB) | PRESENT | WRITABLE | HUGE;
            for e in pd.0.iter_mut() {
                *e = entry;
                entry += PAGE_2M;
            }
            phys(pd) | PRESENT | WRITABLE
        };
    }
}

/// Translates `vaddr` through the tables rooted at `pml4`; `table_at`
/// resolves a physical table address. `None` when not mapped.
pub fn translate<'t>(
    pml4: &'t Table,
    table_at: impl Fn(u64) -> Option<&'t Table>,
    vaddr: u64,
) -> Option<u64> {
    // Non-canonical addresses are never mapped.
    let top = vaddr >> 47;
    if top != 0 && top != 0x1_ffff {
        return None;
    }
    let idx = |level: u32| ((vaddr >> (12 + 9 * level)) & 0x1ff) as usize;
    let e4 = pml4.0[idx(3)];
    if e4 & PRESENT == 0 {
        return None;
    }
    let e3 = table_at(e4 & ADDR_MASK)?.0[idx(2)];
    if e3 & PRESENT == 0 {
        return None;
    }
    if e3 & HUGE != 0 {
        return Some((e3 & ADDR_MASK & !(GIB - 1)) | (vaddr & (GIB - 1)));
    }
    let e2 = table_at(e3 & ADDR_MASK)?.0[idx(1)];
    if e2 & PRESENT == 0 {
        return None;
    }
    if e2 & HUGE != 0 {
        return Some((e2 & ADDR_MASK & !(PAGE_2M - 1)) | (vaddr & (PAGE_2M - 1)));
    }
    // The builder never makes 4 KiB mappings.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Set {
        pml4: Box<Table>,
        pdpt: Box<Table>,
        pds: Vec<Table>,
    }

    fn addr(t: &Table) -> u64 {
        t as *const Table as u64
    }

    impl Set {
        fn new(pds: usize) -> Self {
            // Garbage in the tables: the builder must overwrite what it uses.
            let junk = Table([0xdead_beef_0000_0001; 512]);
            Set {
                pml4: Box::new(junk.clone()),
                pdpt: Box::new(junk.clone()),
                pds: vec![junk; pds],
            }
        }

        fn build(&mut self, gibs: u64, gb: bool) {
            build_identity(
                &mut self.pml4,
                &mut self.pdpt,
                &mut self.pds,
                gibs,
                gb,
                addr,
            );
        }

        fn translate(&self, v: u64) -> Option<u64> {
            let tables: Vec<&Table> = std::iter::once(&*self.pdpt)
                .chain(self.pds.iter())
                .collect();
            translate(
                &self.pml4,
                |a| tables.iter().copied().find(|t| addr(t) == a),
                v,
            )
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(gibs_to_map(128 << 20, false, 64), 4);
        assert_eq!(gibs_to_map(5 << 30, false, 64), 5);
        assert_eq!(gibs_to_map((5 << 30) + 1, false, 64), 6);
        assert_eq!(gibs_to_map(100 << 30, false, 64), 64);
        assert_eq!(gibs_to_map(100 << 30, true, 64), 100);
        assert_eq!(gibs_to_map(1 << 40, true, 64), 512);
    }

    #[test]
    fn two_mib_pages_identity() {
        let mut s = Set::new(8);
        s.build(5, false);
        for v in [
            0u64,
            0x1000,
            0x100_0000,
            0x7fff_ffff,
            0xfec0_0000,
            0xfee0_0000,
            0xffff_ffff,
            0x1_3fff_fff8,
        ] {
            assert_eq!(s.translate(v), Some(v), "{v:#x}");
        }
        assert_eq!(s.translate(5 << 30), None);
        assert_eq!(s.translate(0x7f00_0000_0000), None);
        assert_eq!(s.translate(0x8000_0000_0000_0000), None);
        // Unused PD tables are left alone.
        assert_eq!(s.pds[5].0[0], 0xdead_beef_0000_0001);
        assert!(s.pml4.0[1..].iter().all(|&e| e == 0));
    }

    #[test]
    fn one_gib_pages_identity() {
        let mut s = Set::new(0);
        s.build(64, true);
        for v in [0u64, 0xfee0_0000, 0xf_0000_1234, (64 << 30) - 8] {
            assert_eq!(s.translate(v), Some(v), "{v:#x}");
        }
        assert_eq!(s.translate(64 << 30), None);
        assert_eq!(s.pdpt.0[0], PRESENT | WRITABLE | HUGE);
    }

    #[test]
    fn capped_by_available_pds() {
        let mut s = Set::new(4);
        s.build(6, false);
        assert_eq!(s.translate((4 << 30) - 1), Some((4 << 30) - 1));
        assert_eq!(s.translate(4 << 30), None);
    }
}
