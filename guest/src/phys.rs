//! Physical memory access through the identity map: byte slices for the
//! table parsers and volatile MMIO register access.

use core::sync::atomic::{AtomicU64, Ordering};

use testkernel::physmem::PhysMem;

/// Addresses below this are identity mapped. At entry the boot protocols
/// guarantee 1 GiB (Linux) or we map 4 GiB ourselves (PVH); `paging::init`
/// raises it to what it maps.
static MAPPED_LIMIT: AtomicU64 = AtomicU64::new(1 << 30);

/// Sets the end of the identity map.
pub fn set_mapped_limit(limit: u64) {
    MAPPED_LIMIT.store(limit, Ordering::Relaxed);
}

/// End of the identity map.
pub fn mapped_limit() -> u64 {
    MAPPED_LIMIT.load(Ordering::Relaxed)
}

/// True when `[addr, addr + len)` is identity mapped.
pub fn is_mapped(addr: u64, len: u64) -> bool {
    addr.checked_add(len)
        .is_some_and(|end| end <= mapped_limit())
}

/// Read-only view of identity-mapped physical memory (firmware tables,
/// boot information). Address 0 is refused (a null pointer in Rust terms).
pub struct Identity;

impl PhysMem for Identity {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        if addr == 0 || !is_mapped(addr, len as u64) {
            return None;
        }
        // SAFETY: the range is identity mapped (checked above) and non-null;
        // it is firmware/loader data or RAM the kernel does not write while
        // the slice lives (parsers copy what they keep).
        Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
    }
}

/// Reads a 32-bit MMIO register.
///
/// # Safety
/// `addr` must be a mapped, 4-byte aligned device register (or RAM).
pub unsafe fn read32(addr: u64) -> u32 {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// Writes a 32-bit MMIO register.
///
/// # Safety
/// `addr` must be a mapped, 4-byte aligned device register whose write has
/// no effect on memory the kernel uses.
pub unsafe fn write32(addr: u64, value: u32) {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}
