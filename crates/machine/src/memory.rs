//! Guest RAM: anonymous, lazily populated mappings below and above the MMIO hole, and the e820
//! map that describes them.

use crate::layout::*;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// e820 entry types (Linux `arch/x86/include/uapi/asm/e820.h`).
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The RAM ranges for `mem_size` bytes: one below the hole, and the rest from 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(GuestAddress, u64)> {
    if mem_size <= MMIO_HOLE_START {
        vec![(GuestAddress(0), mem_size)]
    } else {
        vec![
            (GuestAddress(0), MMIO_HOLE_START),
            (GuestAddress(MMIO_HOLE_END), mem_size - MMIO_HOLE_START),
        ]
    }
}

/// Maps guest RAM (`MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE`: pages cost host memory only
/// once the guest touches them).
pub fn create_guest_memory(mem_size: u64) -> Result<GuestMemoryMmap, std::io::Error> {
    let ranges: Vec<(GuestAddress, usize)> = ram_ranges(mem_size)
        .into_iter()
        .map(|(a, s)| (a, s as usize))
        .collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|e| {
        std::io::Error::other(format!("cannot map {mem_size} bytes of guest memory: {e}"))
    })
}

/// Maps guest RAM from a snapshot's memory file, each region at its offset, `MAP_PRIVATE`:
/// copy-on-write, so pages are read from the file (its page cache, shared by every VM started
/// from it) only when the guest touches them, and what the guest writes stays its own.
pub fn map_snapshot_memory(
    file: &std::fs::File,
    layout: &[crate::snapshot::MemoryRegionState],
) -> Result<GuestMemoryMmap, std::io::Error> {
    use vm_memory::mmap::MmapRegionBuilder;
    use vm_memory::{FileOffset, GuestRegionMmap};
    let err = |e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("cannot map the snapshot's memory: {e}"))
    };
    let mut regions = Vec::new();
    for r in layout {
        let fo = FileOffset::new(file.try_clone()?, r.file_offset);
        let mmap = MmapRegionBuilder::new(r.size as usize)
            .with_file_offset(fo)
            .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
            .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_NORESERVE)
            .build()
            .map_err(|e| err(&e))?;
        let region = GuestRegionMmap::new(mmap, GuestAddress(r.guest_addr))
            .ok_or_else(|| err(&"region overflows the address space"))?;
        regions.push(region);
    }
    GuestMemoryMmap::from_regions(regions).map_err(|e| err(&e))
}

/// Marks every RAM mapping `MADV_DONTDUMP`, so a core dump holds no guest memory.
pub fn exclude_from_core_dumps(mem: &GuestMemoryMmap) -> std::io::Result<()> {
    for region in mem.iter() {
        let host = region.as_ptr();
        // SAFETY: `host` and `len` describe a mapping owned by `region`, which outlives this call;
        // madvise(MADV_DONTDUMP) changes only core-dump behaviour, never the contents.
        let ret = unsafe {
            libc::madvise(
                host as *mut libc::c_void,
                region.len() as usize,
                libc::MADV_DONTDUMP,
            )
        };
        if ret != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The e820 map of a guest with `mem_size` bytes of RAM.
pub fn e820_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: EBDA_START,
            size: HIMEM_START - EBDA_START,
            kind: E820_RESERVED,
        },
    ];
    let low_end = mem_size.min(MMIO_HOLE_START);
    map.push(E820Entry {
        addr: HIMEM_START,
        size: low_end - HIMEM_START,
        kind: E820_RAM,
    });
    if mem_size > MMIO_HOLE_START {
        map.push(E820Entry {
            addr: MMIO_HOLE_END,
            size: mem_size - MMIO_HOLE_START,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_range() {
        assert_eq!(ram_ranges(128 << 20), vec![(GuestAddress(0), 128 << 20)]);
        let map = e820_map(128 << 20);
        assert_eq!(map.len(), 3);
        assert_eq!(
            map[2],
            E820Entry {
                addr: 0x10_0000,
                size: (128 << 20) - 0x10_0000,
                kind: E820_RAM
            }
        );
        let usable: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(usable, (128 << 20) - (HIMEM_START - EBDA_START));
    }

    #[test]
    fn big_guest_crosses_the_hole() {
        let size = 4u64 << 30;
        let r = ram_ranges(size);
        assert_eq!(r[0], (GuestAddress(0), 3 << 30));
        assert_eq!(r[1], (GuestAddress(4 << 30), 1 << 30));
        let map = e820_map(size);
        assert_eq!(
            map[3],
            E820Entry {
                addr: 4 << 30,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
        // Nothing usable overlaps the hole.
        for e in &map {
            assert!(e.addr + e.size <= MMIO_HOLE_START || e.addr >= MMIO_HOLE_END);
        }
    }

    #[test]
    fn memory_is_mapped_lazily_and_readable() {
        use vm_memory::Bytes;
        let mem = create_guest_memory(4u64 << 30).unwrap();
        assert_eq!(mem.num_regions(), 2);
        mem.write_obj(0xdead_beefu32, GuestAddress(MMIO_HOLE_END))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(MMIO_HOLE_END)).unwrap(),
            0xdead_beef
        );
        assert!(mem.write_obj(1u8, GuestAddress(MMIO_HOLE_START)).is_err());
        exclude_from_core_dumps(&mem).unwrap();
    }
}
