//! What boot found out, kept for the shell: set once at the end of boot,
//! read-only afterwards.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

use testkernel::bootinfo::{BootInfo, CMDLINE_MAX};
use testkernel::topology::Topology;

use crate::paging::MapInfo;
use crate::smp::StartReport;

/// The boot results.
pub struct System {
    /// Boot protocol, memory map, loader pointers.
    pub boot: BootInfo,
    /// Command line bytes (first `cmdline_len`).
    pub cmdline: [u8; CMDLINE_MAX],
    /// Length of the command line.
    pub cmdline_len: usize,
    /// CPUs, I/O APICs and ISA routes.
    pub topology: Topology,
    /// The identity map.
    pub map: MapInfo,
    /// AP bring-up result.
    pub smp: StartReport,
    /// Boot CPU's APIC id.
    pub bsp_apic_id: u32,
    /// GSI of the serial port.
    pub serial_gsi: u32,
    /// Sum of usable e820 bytes.
    pub usable: u64,
}

impl System {
    /// The command line.
    pub fn cmdline(&self) -> &[u8] {
        &self.cmdline[..self.cmdline_len]
    }
}

/// A value written once, then shared read-only.
pub struct Once<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

// SAFETY: the value is written by exactly one `set` (guarded by `state`)
// and only handed out as `&T` after it is published with Release.
unsafe impl<T: Sync> Sync for Once<T> {}

impl<T> Once<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Stores `value`; panics if called twice.
    pub fn set(&self, value: T) {
        let won = self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        assert!(won, "Once::set called twice");
        // SAFETY: this caller won the EMPTY -> WRITING transition, so no
        // other reference to the value exists or can be created yet.
        unsafe { (*self.value.get()).write(value) };
        self.state.store(READY, Ordering::Release);
    }

    /// The value, if set.
    pub fn get(&self) -> Option<&T> {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY is only stored after the value was written, and
            // it is never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

static SYSTEM: Once<System> = Once::new();

/// Publishes the boot results.
pub fn set(system: System) {
    SYSTEM.set(system);
}

/// The boot results (boot has finished before the shell runs).
pub fn get() -> &'static System {
    SYSTEM
        .get()
        .expect("boot results read before boot finished")
}
