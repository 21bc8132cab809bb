//! Coalesced port writes: KVM records a guest's writes to a registered port in a ring shared
//! with the VMM instead of leaving `KVM_RUN`, and the VMM replays them, in order, before it
//! handles the next exit of any vCPU. Used for the CMOS RTC's index port (as QEMU does): Linux
//! reads every CMOS register as a write to 0x70 then a read of 0x71, so this halves the exits of
//! `rtc_cmos` (its probe and every clock read), which matters most where exits are slow, as
//! under nested virtualisation.
//!
//! One ring serves the whole VM. The index write only matters to the next access of the data
//! port, which exits and so replays it first; a vCPU replays after each `KVM_RUN`, so nothing
//! is left in the ring once every vCPU has parked for a snapshot.

use devices::Bus;
use kvm_bindings::KVM_COALESCED_MMIO_PAGE_OFFSET;
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VcpuFd, VmFd};
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use vm_memory::mmap::MmapRegion;
use vm_memory::{Bytes, FileOffset, VolatileMemory};

/// x86-64's page size: the ring is one page at page `KVM_COALESCED_MMIO_PAGE_OFFSET` of a
/// vCPU's fd.
const PAGE_SIZE: usize = 4096;
/// `struct kvm_coalesced_mmio_ring` is `first` and `last` (u32 each) then the entries.
const FIRST: usize = 0;
const LAST: usize = 4;
const ENTRIES: usize = 8;
/// `struct kvm_coalesced_mmio`: phys_addr u64, len u32, pio u32, data [u8; 8].
const ENTRY_SIZE: usize = 24;
/// The kernel's KVM_COALESCED_MMIO_MAX.
const RING_MAX: u32 = ((PAGE_SIZE - ENTRIES) / ENTRY_SIZE) as u32;

/// The VM's ring of coalesced writes.
pub struct CoalescedRing {
    page: MmapRegion,
    /// Held while replaying: `first` moves on only after an entry's write is done, so a vCPU
    /// that finds the ring empty knows every earlier write has reached its device.
    replay: Mutex<()>,
}

impl CoalescedRing {
    /// Registers `ports` (start, length) for coalescing and maps the ring through `vcpu`.
    /// None where KVM cannot coalesce port writes: they then exit as usual.
    pub fn attach(
        kvm: &Kvm,
        vm: &VmFd,
        vcpu: &VcpuFd,
        ports: &[(u16, u32)],
    ) -> Result<Option<CoalescedRing>, String> {
        if !kvm.check_extension(Cap::CoalescedPio) {
            log::debug!("KVM cannot coalesce port writes: every port write exits");
            return Ok(None);
        }
        // SAFETY: the vCPU's fd is open for as long as `vcpu` is borrowed, and is only borrowed
        // here to be duplicated.
        let fd = unsafe { BorrowedFd::borrow_raw(vcpu.as_raw_fd()) }
            .try_clone_to_owned()
            .map_err(|e| format!("coalesced ring: {e}"))?;
        let offset = u64::from(KVM_COALESCED_MMIO_PAGE_OFFSET) * PAGE_SIZE as u64;
        let page = MmapRegion::from_file(FileOffset::new(File::from(fd), offset), PAGE_SIZE)
            .map_err(|e| format!("map the coalesced ring: {e}"))?;
        for &(port, len) in ports {
            vm.register_coalesced_mmio(IoEventAddress::Pio(u64::from(port)), len)
                .map_err(|e| format!("coalesce writes to port 0x{port:x}: {e}"))?;
            log::info!("writes to port 0x{port:x} are coalesced (KVM records them, no exit)");
        }
        Ok(Some(CoalescedRing {
            page,
            replay: Mutex::new(()),
        }))
    }

    fn index(&self, at: usize) -> &AtomicU32 {
        self.page
            .get_atomic_ref::<AtomicU32>(at)
            .expect("the ring's indices lie in its page")
    }

    /// Replays every recorded write onto `pio` (or `mmio`), oldest first.
    pub fn replay(&self, pio: &Bus, mmio: &Bus) {
        let (first, last) = (self.index(FIRST), self.index(LAST));
        if first.load(Ordering::Acquire) == last.load(Ordering::Acquire) {
            return;
        }
        let _g = self.replay.lock().unwrap_or_else(|e| e.into_inner());
        let slice = self.page.as_volatile_slice();
        loop {
            let f = first.load(Ordering::Acquire);
            // The kernel publishes `last` after writing the entry (smp_wmb).
            if f == last.load(Ordering::Acquire) {
                return;
            }
            if f >= RING_MAX {
                log::error!("coalesced ring: index {f} out of range; writes dropped");
                first.store(last.load(Ordering::Acquire), Ordering::Release);
                return;
            }
            let at = ENTRIES + f as usize * ENTRY_SIZE;
            let addr: u64 = slice.read_obj(at).unwrap_or(0);
            let len: u32 = slice.read_obj(at + 8).unwrap_or(0);
            let is_pio: u32 = slice.read_obj(at + 12).unwrap_or(0);
            let mut data = [0u8; 8];
            let _ = slice.read_slice(&mut data, at + 16);
            let data = &data[..(len as usize).min(8)];
            if is_pio != 0 {
                pio.write(addr, data);
            } else {
                mmio.write(addr, data);
            }
            first.store((f + 1) % RING_MAX, Ordering::Release);
        }
    }
}
