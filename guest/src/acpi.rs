//! ACPI: finding the RSDP and reading CPUs, I/O APICs and interrupt source
//! overrides from the MADT ("APIC" table).

use crate::bytes::{checksum, u16_at, u32_at, u64_at, u8_at};
use crate::physmem::PhysMem;
use crate::topology::{Cpu, IoApic, IsaRoute, RouteTarget, Source, Topology};

/// RSDP signature.
pub const RSDP_SIG: &[u8; 8] = b"RSD PTR ";
/// Bytes covered by the ACPI 1.0 RSDP checksum.
pub const RSDP_V1_LEN: usize = 20;
/// Bytes covered by the ACPI 2.0+ extended checksum.
pub const RSDP_V2_LEN: usize = 36;
/// Size of a system description table header.
pub const SDT_HEADER_LEN: usize = 36;
/// MADT signature.
pub const MADT_SIG: &[u8; 4] = b"APIC";
/// Offset of the first MADT interrupt controller structure.
pub const MADT_ENTRIES: usize = 44;

/// MADT interrupt controller structure types.
pub mod madt {
    /// Processor local APIC.
    pub const LOCAL_APIC: u8 = 0;
    /// I/O APIC.
    pub const IOAPIC: u8 = 1;
    /// Interrupt source override.
    pub const INT_SRC_OVERRIDE: u8 = 2;
    /// Local APIC address override.
    pub const LAPIC_ADDR_OVERRIDE: u8 = 5;
    /// Processor local x2APIC.
    pub const LOCAL_X2APIC: u8 = 9;
}

/// Why the MADT could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// A table could not be read.
    Unreadable(u64),
    /// The RSDP is not valid.
    BadRsdp,
    /// RSDT/XSDT signature or checksum wrong.
    BadRootTable,
    /// No valid "APIC" table is listed.
    NoMadt,
    /// A MADT structure has a length that runs past the table (or is < 2).
    BadEntry { offset: usize },
}

/// Is there a valid RSDP at the start of `b`? (ACPI 1.0 checksum, and for
/// revision 2 and later the extended checksum too.)
pub fn is_rsdp(b: &[u8]) -> bool {
    if b.len() < RSDP_V1_LEN || &b[..8] != RSDP_SIG || checksum(&b[..RSDP_V1_LEN]) != 0 {
        return false;
    }
    u8_at(b, 15) < 2 || (b.len() >= RSDP_V2_LEN && checksum(&b[..RSDP_V2_LEN]) == 0)
}

/// Scans `[start, start + len)` on 16-byte boundaries for the RSDP.
pub fn scan_rsdp(mem: &impl PhysMem, start: u64, len: usize) -> Option<u64> {
    let b = mem.bytes(start, len)?;
    (0..len.saturating_sub(RSDP_V1_LEN - 1))
        .step_by(16)
        .find(|&off| b[off] == b'R' && is_rsdp(&b[off..]))
        .map(|off| start + off as u64)
}

/// Finds the RSDP where the ACPI spec says to look on PC-compatible
/// systems: the first KiB of the EBDA, then 0xE0000-0xFFFFF.
pub fn find_rsdp(mem: &impl PhysMem) -> Option<u64> {
    let seg = mem.bytes(0x40e, 2).map(|b| u16_at(b, 0)).unwrap_or(0);
    let ebda = u64::from(seg) << 4;
    if (0x400..0xa0000).contains(&ebda) {
        if let Some(a) = scan_rsdp(mem, ebda, 0x400) {
            return Some(a);
        }
    }
    scan_rsdp(mem, 0xe0000, 0x20000)
}

/// A whole SDT at `addr`, checked: signature `sig` (if given) and checksum.
fn table<'m>(mem: &'m impl PhysMem, addr: u64, sig: Option<&[u8; 4]>) -> Option<&'m [u8]> {
    let hdr = mem.bytes(addr, SDT_HEADER_LEN)?;
    if let Some(sig) = sig {
        if &hdr[..4] != sig {
            return None;
        }
    }
    let len = u32_at(hdr, 4) as usize;
    if len < SDT_HEADER_LEN {
        return None;
    }
    let t = mem.bytes(addr, len)?;
    (checksum(t) == 0).then_some(t)
}

/// Finds the MADT through the XSDT (revision 2+, when set) or the RSDT.
pub fn find_madt(mem: &impl PhysMem, rsdp: u64) -> Result<u64, AcpiError> {
    let r = mem
        .bytes(rsdp, RSDP_V1_LEN)
        .ok_or(AcpiError::Unreadable(rsdp))?;
    let rev = u8_at(r, 15);
    let r = if rev >= 2 {
        mem.bytes(rsdp, RSDP_V2_LEN)
            .ok_or(AcpiError::Unreadable(rsdp))?
    } else {
        r
    };
    if !is_rsdp(r) {
        return Err(AcpiError::BadRsdp);
    }
    let xsdt = if rev >= 2 { u64_at(r, 24) } else { 0 };
    let (root, sig, width) = if xsdt != 0 {
        (xsdt, b"XSDT", 8)
    } else {
        (u64::from(u32_at(r, 16)), b"RSDT", 4)
    };
    let t = table(mem, root, Some(sig)).ok_or(AcpiError::BadRootTable)?;
    let mut off = SDT_HEADER_LEN;
    while off + width <= t.len() {
        let addr = if width == 8 {
            u64_at(t, off)
        } else {
            u64::from(u32_at(t, off))
        };
        if table(mem, addr, Some(MADT_SIG)).is_some() {
            return Ok(addr);
        }
        off += width;
    }
    Err(AcpiError::NoMadt)
}

/// Reads the MADT at `addr`.
pub fn parse_madt(mem: &impl PhysMem, addr: u64) -> Result<Topology, AcpiError> {
    let t = table(mem, addr, Some(MADT_SIG)).ok_or(AcpiError::NoMadt)?;
    let mut topo = Topology::new(Source::Madt, addr);
    topo.lapic_addr = u64::from(u32_at(t, 36));
    let mut off = MADT_ENTRIES;
    while off + 2 <= t.len() {
        let kind = t[off];
        let len = usize::from(t[off + 1]);
        if len < 2 || off + len > t.len() {
            return Err(AcpiError::BadEntry { offset: off });
        }
        let e = &t[off..off + len];
        match kind {
            madt::LOCAL_APIC if len >= 8 => topo.add_cpu(Cpu {
                apic_id: u32::from(e[3]),
                enabled: u32_at(e, 4) & 1 != 0,
                bsp: false,
            }),
            madt::LOCAL_X2APIC if len >= 16 => topo.add_cpu(Cpu {
                apic_id: u32_at(e, 4),
                enabled: u32_at(e, 8) & 1 != 0,
                bsp: false,
            }),
            madt::IOAPIC if len >= 12 => {
                let _ = topo.ioapics.push(IoApic {
                    id: e[2],
                    addr: u64::from(u32_at(e, 4)),
                    gsi_base: Some(u32_at(e, 8)),
                });
            }
            madt::INT_SRC_OVERRIDE if len >= 10 && e[2] == 0 => {
                let _ = topo.isa_routes.push(IsaRoute {
                    irq: e[3],
                    target: RouteTarget::Gsi(u32_at(e, 4)),
                    flags: u16_at(e, 8),
                });
            }
            madt::LAPIC_ADDR_OVERRIDE if len >= 12 => topo.lapic_addr = u64_at(e, 4),
            _ => {}
        }
        off += len;
    }
    Ok(topo)
}

/// RSDP (given, or found by scanning) to topology in one step.
pub fn topology(mem: &impl PhysMem, rsdp_hint: u64) -> Result<Topology, AcpiError> {
    let rsdp = if rsdp_hint != 0 {
        rsdp_hint
    } else {
        find_rsdp(mem).ok_or(AcpiError::BadRsdp)?
    };
    parse_madt(mem, find_madt(mem, rsdp)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::TestMem;

    fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; SDT_HEADER_LEN];
        t[..4].copy_from_slice(sig);
        t[8] = 1;
        t[10..16].copy_from_slice(b"TESTID");
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[9] = 0u8.wrapping_sub(checksum(&t));
        t
    }

    fn rsdp(rev: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = vec![0u8; RSDP_V2_LEN];
        r[..8].copy_from_slice(RSDP_SIG);
        r[9..15].copy_from_slice(b"TESTID");
        r[15] = rev;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&(RSDP_V2_LEN as u32).to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        r[8] = 0u8.wrapping_sub(checksum(&r[..RSDP_V1_LEN]));
        r[32] = 0u8.wrapping_sub(checksum(&r));
        if rev < 2 {
            r.truncate(RSDP_V1_LEN);
        }
        r
    }

    /// A MADT like QEMU microvm's: N CPUs, one I/O APIC, IRQ0 -> GSI2 and
    /// a level-triggered IRQ9.
    fn madt(cpus: u8) -> Vec<u8> {
        let mut body = vec![];
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        for i in 0..cpus {
            body.extend_from_slice(&[madt::LOCAL_APIC, 8, i, i, 1, 0, 0, 0]);
        }
        body.extend_from_slice(&[madt::IOAPIC, 12, 0, 0]);
        body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[madt::INT_SRC_OVERRIDE, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[madt::INT_SRC_OVERRIDE, 10, 0, 9, 9, 0, 0, 0, 0x0d, 0]);
        sdt(MADT_SIG, &body)
    }

    fn machine(cpus: u8, rev: u8) -> TestMem {
        let mut m = TestMem::default();
        m.zeroed(0x400, 0x100);
        m.zeroed(0xe0000, 0x20000);
        let facp = sdt(b"FACP", &[0; 64]);
        let apic = madt(cpus);
        m.write(0x7000_0000, &facp);
        m.write(0x7000_1000, &apic);
        if rev >= 2 {
            let mut body = vec![];
            body.extend_from_slice(&0x7000_0000u64.to_le_bytes());
            body.extend_from_slice(&0x7000_1000u64.to_le_bytes());
            m.write(0x7000_2000, &sdt(b"XSDT", &body));
            m.write(0xf5a40, &rsdp(rev, 0, 0x7000_2000));
        } else {
            let mut body = vec![];
            body.extend_from_slice(&0x7000_0000u32.to_le_bytes());
            body.extend_from_slice(&0x7000_1000u32.to_le_bytes());
            m.write(0x7000_3000, &sdt(b"RSDT", &body));
            m.write(0xf5a40, &rsdp(rev, 0x7000_3000, 0));
        }
        m
    }

    #[test]
    fn rsdp_scan() {
        let m = machine(2, 0);
        assert_eq!(find_rsdp(&m), Some(0xf5a40));
        let m = machine(2, 2);
        assert_eq!(find_rsdp(&m), Some(0xf5a40));
        let mut m = machine(2, 2);
        m.write(0xf5a40 + 32, &[0x99]); // extended checksum broken
        assert_eq!(find_rsdp(&m), None);
    }

    #[test]
    fn rsdp_in_ebda() {
        let mut m = machine(1, 0);
        m.zeroed(0x9fc00, 0x400);
        m.write(0x40e, &0x9fc0u16.to_le_bytes());
        m.write(0x9fc20, &rsdp(0, 0x7000_3000, 0));
        assert_eq!(find_rsdp(&m), Some(0x9fc20));
    }

    #[test]
    fn madt_through_rsdt_and_xsdt() {
        for rev in [0, 2] {
            let m = machine(4, rev);
            let t = topology(&m, 0).unwrap();
            assert_eq!(t.source, Source::Madt);
            assert_eq!(t.table_addr, 0x7000_1000);
            assert_eq!(t.lapic_addr, 0xfee0_0000);
            let ids: Vec<u32> = t.enabled_cpus().map(|c| c.apic_id).collect();
            assert_eq!(ids, vec![0, 1, 2, 3]);
            assert_eq!(t.ioapics.as_slice()[0].gsi_base, Some(0));
            assert_eq!(t.isa_route(0).unwrap().target, RouteTarget::Gsi(2));
            assert_eq!(t.isa_route(9).unwrap().flags, 0x0d);
            assert_eq!(t.isa_route(4), None);
            // Given RSDP address (PVH rsdp_paddr) works the same.
            assert_eq!(topology(&m, 0xf5a40).unwrap().cpus.len(), 4);
        }
    }

    #[test]
    fn x2apic_disabled_and_overrides() {
        let mut body = vec![];
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[madt::LOCAL_APIC, 8, 0, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&[madt::LOCAL_APIC, 8, 1, 1, 2, 0, 0, 0]); // online capable only
        let mut x2 = vec![madt::LOCAL_X2APIC, 16, 0, 0];
        x2.extend_from_slice(&300u32.to_le_bytes());
        x2.extend_from_slice(&1u32.to_le_bytes());
        x2.extend_from_slice(&7u32.to_le_bytes());
        body.extend_from_slice(&x2);
        let mut ov = vec![madt::LAPIC_ADDR_OVERRIDE, 12, 0, 0];
        ov.extend_from_slice(&0xfed0_0000u64.to_le_bytes());
        body.extend_from_slice(&ov);
        body.extend_from_slice(&[0x7f, 3, 0]); // unknown type: skipped
        let mut m = TestMem::default();
        m.write(0x1000, &sdt(MADT_SIG, &body));
        let t = parse_madt(&m, 0x1000).unwrap();
        assert_eq!(t.lapic_addr, 0xfed0_0000);
        let ids: Vec<u32> = t.enabled_cpus().map(|c| c.apic_id).collect();
        assert_eq!(ids, vec![0, 300]);
        assert_eq!(t.cpus.len(), 3);
    }

    #[test]
    fn bad_tables() {
        let mut m = machine(2, 0);
        m.write(0x7000_1000 + 50, &[0x42]); // MADT checksum broken
        assert_eq!(topology(&m, 0).unwrap_err(), AcpiError::NoMadt);

        let mut m = machine(2, 0);
        m.write(0x7000_3000, b"XXXX");
        assert_eq!(topology(&m, 0).unwrap_err(), AcpiError::BadRootTable);

        let m = TestMem::default();
        assert_eq!(topology(&m, 0).unwrap_err(), AcpiError::BadRsdp);
        assert_eq!(
            topology(&m, 0x1234).unwrap_err(),
            AcpiError::Unreadable(0x1234)
        );

        let mut body = vec![0u8; 8];
        body.extend_from_slice(&[madt::LOCAL_APIC, 20, 0, 0]); // runs past the end
        let mut m = TestMem::default();
        m.write(0x1000, &sdt(MADT_SIG, &body));
        assert_eq!(
            parse_madt(&m, 0x1000).unwrap_err(),
            AcpiError::BadEntry { offset: 44 }
        );
    }
}
