//! The e820 memory map: entries, and the sums the kernel reports.

use crate::fixedvec::FixedVec;

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// Most entries kept (the size of `boot_params.e820_table`).
pub const MAX_E820: usize = 128;

/// One memory map range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct E820Entry {
    /// Physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// 1 = RAM, 2 = reserved, 3 = ACPI, 4 = NVS, 5 = unusable, ...
    pub kind: u32,
}

impl E820Entry {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }

    /// True for usable RAM.
    pub fn is_ram(&self) -> bool {
        self.kind == E820_RAM
    }
}

/// A memory map as given by the boot loader (not sorted, not merged).
pub type MemMap = FixedVec<E820Entry, MAX_E820>;

/// Sum of the sizes of all usable (type 1) entries: the `mem=` of READY.
pub fn usable_bytes(map: &[E820Entry]) -> u64 {
    map.iter()
        .filter(|e| e.is_ram())
        .fold(0u64, |acc, e| acc.saturating_add(e.size))
}

/// End of the highest usable RAM range (0 when there is none).
pub fn ram_end(map: &[E820Entry]) -> u64 {
    map.iter()
        .filter(|e| e.is_ram())
        .map(E820Entry::end)
        .max()
        .unwrap_or(0)
}

/// True when `[addr, addr + len)` lies entirely inside one usable entry.
pub fn is_usable(map: &[E820Entry], addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    map.iter()
        .any(|e| e.is_ram() && e.addr <= addr && end <= e.end())
}

/// The usable RAM inside `[lo, hi)`, as page-aligned pieces, one per entry, in
/// map order. Calls `f(start, len)` for each non-empty piece.
pub fn usable_pieces(map: &[E820Entry], lo: u64, hi: u64, mut f: impl FnMut(u64, u64)) {
    const PAGE: u64 = 4096;
    for e in map.iter().filter(|e| e.is_ram()) {
        let start = e.addr.max(lo).saturating_add(PAGE - 1) & !(PAGE - 1);
        let end = e.end().min(hi) & !(PAGE - 1);
        if end > start {
            f(start, end - start);
        }
    }
}

/// Bytes of usable RAM inside `[lo, hi)` (page-aligned pieces).
pub fn usable_between(map: &[E820Entry], lo: u64, hi: u64) -> u64 {
    let mut total = 0u64;
    usable_pieces(map, lo, hi, |_, len| total += len);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(addr: u64, size: u64, kind: u32) -> E820Entry {
        E820Entry { addr, size, kind }
    }

    /// What QEMU microvm reports for `-m 128`.
    fn qemu_128m() -> Vec<E820Entry> {
        vec![
            e(0, 0x9fc00, 1),
            e(0x9fc00, 0x400, 2),
            e(0xf0000, 0x10000, 2),
            e(0x100000, 0x7f00000, 1),
            e(0xfeffc000, 0x4000, 2),
        ]
    }

    #[test]
    fn sums_only_ram() {
        let m = qemu_128m();
        assert_eq!(usable_bytes(&m), 0x9fc00 + 0x7f00000);
        assert_eq!(ram_end(&m), 0x8000000);
        assert_eq!(usable_bytes(&[]), 0);
        assert_eq!(ram_end(&[]), 0);
    }

    #[test]
    fn above_4g() {
        let m = [e(0, 0xc000_0000, 1), e(0x1_0000_0000, 0x4000_0000, 1)];
        assert_eq!(usable_bytes(&m), 4 << 30);
        assert_eq!(ram_end(&m), 0x1_4000_0000);
        assert_eq!(
            usable_between(&m, 32 << 20, u64::MAX),
            (4 << 30) - (32 << 20)
        );
        assert_eq!(
            usable_between(&m, 32 << 20, 1 << 32),
            (3 << 30) - (32 << 20)
        );
    }

    #[test]
    fn pieces_are_page_aligned() {
        let m = [
            e(0x1800, 0x3000, 1),
            e(0x10000, 0x800, 1),
            e(0x20000, 0x1000, 2),
        ];
        let mut got = vec![];
        usable_pieces(&m, 0, u64::MAX, |a, l| got.push((a, l)));
        assert_eq!(got, vec![(0x2000, 0x2000)]);
    }

    #[test]
    fn usable_check() {
        let m = qemu_128m();
        assert!(is_usable(&m, 0x8000, 0x1000));
        assert!(!is_usable(&m, 0x9f000, 0x1000));
        assert!(!is_usable(&m, 0xf0000, 0x10));
        assert!(!is_usable(&m, u64::MAX, 2));
    }

    #[test]
    fn saturating_end() {
        let m = [e(u64::MAX - 1, 10, 1)];
        assert_eq!(ram_end(&m), u64::MAX);
    }
}
