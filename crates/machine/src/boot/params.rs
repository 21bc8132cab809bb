//! The Linux `boot_params` ("zero page") for the 64-bit boot protocol
//! (Documentation/arch/x86/boot.rst).

use crate::memory::E820Entry;
use linux_loader::loader::bootparam::{boot_params, setup_header};

/// "HdrS".
pub const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
pub const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Boot loader id "undefined" (0xff): we have no assigned id.
pub const KERNEL_LOADER_OTHER: u8 = 0xff;
pub const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;
/// The initrd must end below this unless the header says otherwise.
pub const DEFAULT_INITRD_ADDR_MAX: u32 = 0x37ff_ffff;
/// `loadflags`: the protected-mode code is loaded at 0x100000.
pub const LOADED_HIGH: u8 = 0x01;
/// Boot protocol version we present for raw and ELF kernels.
pub const BOOT_PROTOCOL_VERSION: u16 = 0x020c;
/// `E820_MAX_ENTRIES_ZEROPAGE`.
pub const E820_MAX_ENTRIES: usize = 128;

/// Everything that goes into the zero page.
pub struct BootParamsInput<'a> {
    /// The kernel's own setup header (bzImage), or `None` to synthesize one.
    pub header: Option<setup_header>,
    pub cmdline_addr: u64,
    /// Length of the command line, NUL included.
    pub cmdline_size: u32,
    pub initrd: Option<(u64, u64)>,
    pub e820: &'a [E820Entry],
}

/// Builds the zero page.
pub fn build(input: &BootParamsInput) -> boot_params {
    let mut params = boot_params::default();
    let hdr = &mut params.hdr;
    if let Some(h) = input.header {
        *hdr = h;
    } else {
        hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        hdr.header = KERNEL_HDR_MAGIC;
        hdr.version = BOOT_PROTOCOL_VERSION;
        hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
        hdr.initrd_addr_max = DEFAULT_INITRD_ADDR_MAX;
    }
    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.loadflags |= LOADED_HIGH;
    hdr.cmd_line_ptr = input.cmdline_addr as u32;
    params.ext_cmd_line_ptr = (input.cmdline_addr >> 32) as u32;
    hdr.cmdline_size = input.cmdline_size;
    if let Some((addr, size)) = input.initrd {
        hdr.ramdisk_image = addr as u32;
        params.ext_ramdisk_image = (addr >> 32) as u32;
        hdr.ramdisk_size = size as u32;
        params.ext_ramdisk_size = (size >> 32) as u32;
    }
    let n = input.e820.len().min(E820_MAX_ENTRIES);
    for (slot, e) in params.e820_table.iter_mut().zip(&input.e820[..n]) {
        slot.addr = e.addr;
        slot.size = e.size;
        slot.r#type = e.kind;
    }
    params.e820_entries = n as u8;
    params
}

/// The highest address the initrd may end at, per the kernel header.
pub fn initrd_addr_max(header: Option<&setup_header>) -> u64 {
    match header {
        Some(h) if h.version >= 0x0203 && h.initrd_addr_max != 0 => h.initrd_addr_max as u64,
        _ => DEFAULT_INITRD_ADDR_MAX as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::e820_map;
    use vm_memory::ByteValued;

    fn field<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
        bytes[off..off + N].try_into().unwrap()
    }

    #[test]
    fn zero_page_fields_at_protocol_offsets() {
        let e820 = e820_map(128 << 20);
        let p = build(&BootParamsInput {
            header: None,
            cmdline_addr: 0x20000,
            cmdline_size: 43,
            initrd: Some((0x700_0000, 0x1234)),
            e820: &e820,
        });
        let b = p.as_slice();
        assert_eq!(b.len(), 4096);
        // Offsets from Documentation/arch/x86/boot.rst and zero-page.rst.
        assert_eq!(u16::from_le_bytes(field(b, 0x1fe)), 0xaa55, "boot_flag");
        assert_eq!(&b[0x202..0x206], b"HdrS", "header");
        assert_eq!(u16::from_le_bytes(field(b, 0x206)), 0x020c, "version");
        assert_eq!(b[0x210], 0xff, "type_of_loader");
        assert_eq!(b[0x211] & 1, 1, "loadflags LOADED_HIGH");
        assert_eq!(
            u32::from_le_bytes(field(b, 0x218)),
            0x700_0000,
            "ramdisk_image"
        );
        assert_eq!(u32::from_le_bytes(field(b, 0x21c)), 0x1234, "ramdisk_size");
        assert_eq!(u32::from_le_bytes(field(b, 0x228)), 0x20000, "cmd_line_ptr");
        assert_eq!(
            u32::from_le_bytes(field(b, 0x22c)),
            0x37ff_ffff,
            "initrd_addr_max"
        );
        assert_eq!(
            u32::from_le_bytes(field(b, 0x230)),
            0x100_0000,
            "kernel_alignment"
        );
        assert_eq!(u32::from_le_bytes(field(b, 0x238)), 43, "cmdline_size");
        assert_eq!(u32::from_le_bytes(field(b, 0x0c8)), 0, "ext_cmd_line_ptr");
        assert_eq!(b[0x1e8] as usize, e820.len(), "e820_entries");
        for (i, e) in e820.iter().enumerate() {
            let o = 0x2d0 + i * 20;
            assert_eq!(u64::from_le_bytes(field(b, o)), e.addr);
            assert_eq!(u64::from_le_bytes(field(b, o + 8)), e.size);
            assert_eq!(u32::from_le_bytes(field(b, o + 16)), e.kind);
        }
    }

    #[test]
    fn bzimage_header_is_kept_and_completed() {
        let mut h = setup_header {
            version: 0x020f,
            initrd_addr_max: 0x7fff_ffff,
            setup_sects: 30,
            header: KERNEL_HDR_MAGIC,
            ..Default::default()
        };
        h.loadflags = 0;
        let p = build(&BootParamsInput {
            header: Some(h),
            cmdline_addr: 0x20000,
            cmdline_size: 10,
            initrd: None,
            e820: &[],
        });
        assert_eq!(p.hdr.setup_sects, 30);
        assert_eq!({ p.hdr.version }, 0x020f);
        assert_eq!(p.hdr.type_of_loader, 0xff);
        assert_eq!(p.hdr.loadflags & LOADED_HIGH, LOADED_HIGH);
        assert_eq!(initrd_addr_max(Some(&h)), 0x7fff_ffff);
        assert_eq!(initrd_addr_max(None), 0x37ff_ffff);
        h.version = 0x0202;
        assert_eq!(initrd_addr_max(Some(&h)), 0x37ff_ffff);
    }
}
