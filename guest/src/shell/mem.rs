//! `mem fill|check <MiB> <seed>`: writes or verifies one u64 per 4 KiB page
//! of usable RAM from 32 MiB up (above the kernel and its data), so a test
//! of hundreds of MiB stays cheap under instruction emulation. `mem zero
//! <from-MiB> <MiB>` checks that the same word of every page there is zero
//! (pages the host gave back, e.g. after a balloon deflate, read as zero).

use super::{field_dec, Args, CmdError, Command};
use crate::{phys, serial, system};
use testkernel::e820;
use testkernel::fixedvec::FixedVec;
use testkernel::pattern::{self, STRIDE};

/// Start of the tested area (the kernel ends below it; see link.ld).
pub const TEST_BASE: u64 = 32 << 20;
const MIB: u64 = 1 << 20;

/// The commands of this group.
pub const COMMANDS: &[Command] = &[Command {
    name: "mem",
    usage: "mem fill|check <MiB> <seed> | zero <from-MiB> <MiB>",
    help: "write / verify a seeded pattern (one u64 per page) in RAM from 32 MiB; check pages read as zero",
    run: mem,
}];

fn mem(args: &Args) -> Result<(), CmdError> {
    if args.get(0) == Some(b"zero") {
        return zero(args);
    }
    let fill = match args.get(0) {
        Some(b"fill") => true,
        Some(b"check") => false,
        _ => return Err(CmdError::msg("usage: mem fill|check <MiB> <seed>")),
    };
    if args.len() != 3 {
        return Err(CmdError::msg("usage: mem fill|check <MiB> <seed>"));
    }
    let mib = args.number(1, "bad size")?;
    let seed = args.number(2, "bad seed")?;
    let map = system::get().boot.memmap.as_slice();
    let available = e820::usable_between(map, TEST_BASE, phys::mapped_limit());
    let Some(bytes) = mib.checked_mul(MIB).filter(|&b| b <= available) else {
        return Err(CmdError::dec(
            "size exceeds usable RAM above 32 MiB; max MiB=",
            available / MIB,
        ));
    };
    // Collect the pieces first so the loops below keep everything in
    // registers: under emulation every memory operand costs a page walk.
    let mut pieces: FixedVec<(u64, u64), { e820::MAX_E820 }> = FixedVec::new((0, 0));
    let mut remaining = bytes;
    e820::usable_pieces(map, TEST_BASE, phys::mapped_limit(), |start, len| {
        let len = len.min(remaining);
        if len > 0 {
            remaining -= len;
            let _ = pieces.push((start, start + len));
        }
    });
    let mut pages = 0u64;
    let mut mismatch = None;
    for &(start, end) in pieces.iter() {
        if fill {
            fill_range(start, end, seed);
        } else if let Some(addr) = check_range(start, end, seed) {
            mismatch = Some(addr);
            break;
        }
        pages += (end - start) / STRIDE;
    }
    if let Some(addr) = mismatch {
        return Err(CmdError::hex("mismatch at ", addr));
    }
    field_dec("pages=", pages);
    serial::puts("\n");
    Ok(())
}

/// Writes the pattern word at every page of `[start, end)`.
fn fill_range(start: u64, end: u64, seed: u64) {
    let mut addr = start;
    while addr < end {
        // SAFETY: `addr` is page-aligned usable RAM at or above 32 MiB,
        // identity mapped, which nothing else uses.
        unsafe { core::ptr::write_volatile(addr as *mut u64, pattern::value(seed, addr)) };
        addr += STRIDE;
    }
}

/// Verifies every page of `[start, end)`; the first bad address, if any.
fn check_range(start: u64, end: u64, seed: u64) -> Option<u64> {
    let mut addr = start;
    while addr < end {
        // SAFETY: as in `fill_range`, for reading.
        let got = unsafe { core::ptr::read_volatile(addr as *const u64) };
        if got != pattern::value(seed, addr) {
            return Some(addr);
        }
        addr += STRIDE;
    }
    None
}

/// `mem zero <from-MiB> <MiB>`: the first word of every usable page in the range is zero.
fn zero(args: &Args) -> Result<(), CmdError> {
    if args.len() != 3 {
        return Err(CmdError::msg("usage: mem zero <from-MiB> <MiB>"));
    }
    let from = args.number(1, "bad start")?;
    let mib = args.number(2, "bad size")?;
    let (Some(lo), Some(len)) = (from.checked_mul(MIB), mib.checked_mul(MIB)) else {
        return Err(CmdError::msg("range too large"));
    };
    let hi = lo.saturating_add(len).min(phys::mapped_limit());
    if lo < TEST_BASE {
        return Err(CmdError::msg("start below 32 MiB (kernel memory)"));
    }
    let map = system::get().boot.memmap.as_slice();
    let mut pages = 0u64;
    let mut nonzero = None;
    e820::usable_pieces(map, lo, hi, |start, len| {
        if nonzero.is_some() {
            return;
        }
        let mut addr = start;
        while addr < start + len {
            // SAFETY: `addr` is page-aligned usable RAM at or above 32 MiB, identity mapped.
            if unsafe { core::ptr::read_volatile(addr as *const u64) } != 0 {
                nonzero = Some(addr);
                return;
            }
            addr += STRIDE;
            pages += 1;
        }
    });
    if let Some(addr) = nonzero {
        return Err(CmdError::hex("nonzero at ", addr));
    }
    field_dec("pages=", pages);
    serial::puts("\n");
    Ok(())
}
