//! Boot information: the Linux `boot_params` page (64-bit boot protocol) or the
//! Xen PVH `hvm_start_info` (32-bit PVH entry), reduced to what the kernel uses.

use crate::bytes::{u32_at, u64_at, u8_at};
use crate::e820::{E820Entry, MemMap, MAX_E820};
use crate::physmem::PhysMem;

/// Size of the `boot_params` page.
pub const BOOT_PARAMS_SIZE: usize = 4096;

/// `boot_params` field offsets (Documentation/arch/x86/zero-page.rst).
pub mod zp {
    /// `ext_cmd_line_ptr`: upper 32 bits of the command line address.
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    /// `e820_entries`: number of entries in `e820_table`.
    pub const E820_ENTRIES: usize = 0x1e8;
    /// `hdr.cmd_line_ptr`: lower 32 bits of the command line address.
    pub const CMD_LINE_PTR: usize = 0x228;
    /// `hdr.cmdline_size`: longest command line, without the NUL.
    pub const CMDLINE_SIZE: usize = 0x238;
    /// `e820_table`: up to 128 entries of 20 bytes.
    pub const E820_TABLE: usize = 0x2d0;
    /// Size of one `boot_e820_entry`.
    pub const E820_ENTRY_SIZE: usize = 20;
}

/// `hvm_start_info` layout (xen/include/public/arch-x86/hvm/start_info.h).
pub mod pvh {
    /// "xEn3" with the high bit of the last byte set.
    pub const MAGIC: u32 = 0x336e_c578;
    /// Offsets of the fields used.
    pub const OFF_MAGIC: usize = 0;
    /// `version`: 1 adds the memory map.
    pub const OFF_VERSION: usize = 4;
    /// `cmdline_paddr`.
    pub const OFF_CMDLINE: usize = 24;
    /// `rsdp_paddr`.
    pub const OFF_RSDP: usize = 32;
    /// `memmap_paddr` (version >= 1).
    pub const OFF_MEMMAP: usize = 40;
    /// `memmap_entries` (version >= 1).
    pub const OFF_MEMMAP_ENTRIES: usize = 48;
    /// Size of the version 1 structure.
    pub const SIZE: usize = 56;
    /// Size of one `hvm_memmap_table_entry` {u64 addr, u64 size, u32 type, u32 reserved}.
    pub const MEMMAP_ENTRY_SIZE: usize = 24;
}

/// Which boot protocol brought the kernel up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootProtocol {
    /// Linux 64-bit boot protocol, `rsi` = `boot_params`.
    Linux,
    /// Xen PVH 32-bit entry, `ebx` = `hvm_start_info`.
    Pvh,
}

/// What the kernel keeps from the boot loader.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// How it was booted.
    pub protocol: BootProtocol,
    /// The memory map, as given.
    pub memmap: MemMap,
    /// Physical address of the NUL-terminated command line (0: none).
    pub cmdline_addr: u64,
    /// Longest command line to read, without the NUL.
    pub cmdline_max: usize,
    /// ACPI RSDP address if the loader gave one (0: none, scan for it).
    pub rsdp: u64,
}

/// Why boot information could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootInfoError {
    /// The `hvm_start_info` magic did not match.
    BadPvhMagic(u32),
    /// The structure or memory map could not be read.
    Unreadable(u64),
    /// No memory map entries.
    NoMemoryMap,
}

/// Default and largest command line length read (Linux x86 COMMAND_LINE_SIZE).
pub const CMDLINE_MAX: usize = 2048;

fn empty_map() -> MemMap {
    MemMap::new(E820Entry::default())
}

/// Parses a copy of the Linux `boot_params` page.
pub fn parse_boot_params(page: &[u8]) -> Result<BootInfo, BootInfoError> {
    let count = usize::from(u8_at(page, zp::E820_ENTRIES)).min(MAX_E820);
    let mut memmap = empty_map();
    for i in 0..count {
        let off = zp::E820_TABLE + i * zp::E820_ENTRY_SIZE;
        let entry = E820Entry {
            addr: u64_at(page, off),
            size: u64_at(page, off + 8),
            kind: u32_at(page, off + 16),
        };
        if entry.size != 0 {
            // Cannot overflow: count <= MAX_E820.
            let _ = memmap.push(entry);
        }
    }
    if memmap.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    let cmdline_addr = u64::from(u32_at(page, zp::CMD_LINE_PTR))
        | (u64::from(u32_at(page, zp::EXT_CMD_LINE_PTR)) << 32);
    let size = u32_at(page, zp::CMDLINE_SIZE) as usize;
    let cmdline_max = if size == 0 {
        CMDLINE_MAX
    } else {
        size.min(CMDLINE_MAX)
    };
    Ok(BootInfo {
        protocol: BootProtocol::Linux,
        memmap,
        cmdline_addr,
        cmdline_max,
        rsdp: 0,
    })
}

/// Parses the PVH `hvm_start_info` at `addr` and the memory map it points to.
pub fn parse_pvh(mem: &impl PhysMem, addr: u64) -> Result<BootInfo, BootInfoError> {
    let si = mem
        .bytes(addr, pvh::SIZE)
        .ok_or(BootInfoError::Unreadable(addr))?;
    let magic = u32_at(si, pvh::OFF_MAGIC);
    if magic != pvh::MAGIC {
        return Err(BootInfoError::BadPvhMagic(magic));
    }
    let version = u32_at(si, pvh::OFF_VERSION);
    let cmdline_addr = u64_at(si, pvh::OFF_CMDLINE);
    let rsdp = u64_at(si, pvh::OFF_RSDP);
    let mut memmap = empty_map();
    if version >= 1 {
        let map_addr = u64_at(si, pvh::OFF_MEMMAP);
        let entries = (u32_at(si, pvh::OFF_MEMMAP_ENTRIES) as usize).min(MAX_E820);
        if entries > 0 {
            let table = mem
                .bytes(map_addr, entries * pvh::MEMMAP_ENTRY_SIZE)
                .ok_or(BootInfoError::Unreadable(map_addr))?;
            for i in 0..entries {
                let off = i * pvh::MEMMAP_ENTRY_SIZE;
                let entry = E820Entry {
                    addr: u64_at(table, off),
                    size: u64_at(table, off + 8),
                    kind: u32_at(table, off + 16),
                };
                if entry.size != 0 {
                    let _ = memmap.push(entry);
                }
            }
        }
    }
    if memmap.is_empty() {
        return Err(BootInfoError::NoMemoryMap);
    }
    Ok(BootInfo {
        protocol: BootProtocol::Pvh,
        memmap,
        cmdline_addr,
        cmdline_max: CMDLINE_MAX,
        rsdp,
    })
}

/// Copies the NUL-terminated string at `addr` (at most `max` bytes and what
/// fits in `out`) into `out`; returns its length. Stops early at memory that
/// cannot be read. Address 0 means "no string".
pub fn read_cstr(mem: &impl PhysMem, addr: u64, max: usize, out: &mut [u8]) -> usize {
    if addr == 0 {
        return 0;
    }
    let limit = max.min(out.len());
    for (n, slot) in out.iter_mut().enumerate().take(limit) {
        match mem.bytes(addr + n as u64, 1) {
            Some(&[c]) if c != 0 => *slot = c,
            _ => return n,
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::TestMem;

    fn put_e820(page: &mut [u8], i: usize, addr: u64, size: u64, kind: u32) {
        let off = zp::E820_TABLE + i * zp::E820_ENTRY_SIZE;
        page[off..off + 8].copy_from_slice(&addr.to_le_bytes());
        page[off + 8..off + 16].copy_from_slice(&size.to_le_bytes());
        page[off + 16..off + 20].copy_from_slice(&kind.to_le_bytes());
    }

    #[test]
    fn linux_boot_params() {
        let mut page = vec![0u8; BOOT_PARAMS_SIZE];
        put_e820(&mut page, 0, 0, 0x9fc00, 1);
        put_e820(&mut page, 1, 0x9fc00, 0x400, 2);
        put_e820(&mut page, 2, 0x100000, 0x7f00000, 1);
        page[zp::E820_ENTRIES] = 3;
        page[zp::CMD_LINE_PTR..zp::CMD_LINE_PTR + 4].copy_from_slice(&0x20000u32.to_le_bytes());
        page[zp::EXT_CMD_LINE_PTR..zp::EXT_CMD_LINE_PTR + 4].copy_from_slice(&1u32.to_le_bytes());
        page[zp::CMDLINE_SIZE..zp::CMDLINE_SIZE + 4].copy_from_slice(&255u32.to_le_bytes());
        let bi = parse_boot_params(&page).unwrap();
        assert_eq!(bi.protocol, BootProtocol::Linux);
        assert_eq!(bi.memmap.len(), 3);
        assert_eq!(bi.memmap.as_slice()[2].addr, 0x100000);
        assert_eq!(bi.memmap.as_slice()[2].size, 0x7f00000);
        assert_eq!(bi.memmap.as_slice()[1].kind, 2);
        assert_eq!(bi.cmdline_addr, 0x1_0002_0000);
        assert_eq!(bi.cmdline_max, 255);
        assert_eq!(
            crate::e820::usable_bytes(bi.memmap.as_slice()),
            0x9fc00 + 0x7f00000
        );
    }

    #[test]
    fn linux_boot_params_limits() {
        let mut page = vec![0u8; BOOT_PARAMS_SIZE];
        assert_eq!(
            parse_boot_params(&page).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
        for i in 0..128 {
            put_e820(&mut page, i, (i as u64) << 20, 1 << 20, 1);
        }
        page[zp::E820_ENTRIES] = 200; // more than the table holds
        let bi = parse_boot_params(&page).unwrap();
        assert_eq!(bi.memmap.len(), 128);
        assert_eq!(bi.cmdline_addr, 0);
        assert_eq!(bi.cmdline_max, CMDLINE_MAX);
    }

    fn start_info(version: u32, memmap: u64, entries: u32) -> Vec<u8> {
        let mut si = vec![0u8; pvh::SIZE];
        si[0..4].copy_from_slice(&pvh::MAGIC.to_le_bytes());
        si[4..8].copy_from_slice(&version.to_le_bytes());
        si[24..32].copy_from_slice(&0x7000u64.to_le_bytes());
        si[32..40].copy_from_slice(&0xf5000u64.to_le_bytes());
        si[40..48].copy_from_slice(&memmap.to_le_bytes());
        si[48..52].copy_from_slice(&entries.to_le_bytes());
        si
    }

    fn memmap_entry(addr: u64, size: u64, kind: u32) -> Vec<u8> {
        let mut e = vec![0u8; pvh::MEMMAP_ENTRY_SIZE];
        e[0..8].copy_from_slice(&addr.to_le_bytes());
        e[8..16].copy_from_slice(&size.to_le_bytes());
        e[16..20].copy_from_slice(&kind.to_le_bytes());
        e
    }

    #[test]
    fn pvh_start_info() {
        let mut mem = TestMem::default();
        mem.write(0x6000, &start_info(1, 0x6100, 2));
        let mut map = memmap_entry(0, 0x9fc00, 1);
        map.extend(memmap_entry(0x100000, 0x3ff00000, 1));
        mem.write(0x6100, &map);
        let bi = parse_pvh(&mem, 0x6000).unwrap();
        assert_eq!(bi.protocol, BootProtocol::Pvh);
        assert_eq!(bi.cmdline_addr, 0x7000);
        assert_eq!(bi.rsdp, 0xf5000);
        assert_eq!(bi.memmap.len(), 2);
        assert_eq!(
            crate::e820::usable_bytes(bi.memmap.as_slice()),
            0x9fc00 + 0x3ff00000
        );
    }

    #[test]
    fn pvh_errors() {
        let mut mem = TestMem::default();
        let mut si = start_info(1, 0x6100, 1);
        si[0] ^= 1;
        mem.write(0x6000, &si);
        assert!(matches!(
            parse_pvh(&mem, 0x6000),
            Err(BootInfoError::BadPvhMagic(_))
        ));
        assert_eq!(
            parse_pvh(&mem, 0x9000).unwrap_err(),
            BootInfoError::Unreadable(0x9000)
        );
        mem.write(0x6000, &start_info(0, 0, 0));
        assert_eq!(
            parse_pvh(&mem, 0x6000).unwrap_err(),
            BootInfoError::NoMemoryMap
        );
        mem.write(0x6000, &start_info(1, 0x8000, 1));
        assert_eq!(
            parse_pvh(&mem, 0x6000).unwrap_err(),
            BootInfoError::Unreadable(0x8000)
        );
    }

    #[test]
    fn cstr() {
        let mut mem = TestMem::default();
        mem.write(0x1ffe, b"console=ttyS0\0junk");
        let mut out = [0u8; 64];
        let n = read_cstr(&mem, 0x1ffe, 64, &mut out);
        assert_eq!(&out[..n], b"console=ttyS0");
        let n = read_cstr(&mem, 0x1ffe, 7, &mut out);
        assert_eq!(&out[..n], b"console");
        assert_eq!(read_cstr(&mem, 0, 64, &mut out), 0);
        // Memory that cannot be read ends the string.
        mem.write(0x3000, b"abc");
        let n = read_cstr(&mem, 0x3000, 64, &mut out);
        assert_eq!(&out[..n], b"abc");
        let mut small = [0u8; 2];
        assert_eq!(read_cstr(&mem, 0x3000, 64, &mut small), 2);
    }
}
