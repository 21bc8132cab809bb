//! Intel MultiProcessor Specification 1.4 tables: finding the floating
//! pointer where Linux looks for it, and reading CPUs, I/O APICs and ISA
//! interrupt assignments from the configuration table.

use crate::bytes::{checksum, u16_at, u32_at, u8_at};
use crate::physmem::PhysMem;
use crate::topology::{Cpu, IoApic, IsaRoute, RouteTarget, Source, Topology};

/// Floating pointer signature.
pub const FLOATING_SIG: &[u8; 4] = b"_MP_";
/// Configuration table signature.
pub const CONFIG_SIG: &[u8; 4] = b"PCMP";
/// Size of the floating pointer structure (length field 1 = 16 bytes).
pub const FLOATING_SIZE: usize = 16;
/// Size of the configuration table header.
pub const CONFIG_HEADER_SIZE: usize = 44;

/// Entry types and sizes.
pub mod entry {
    /// Processor entry (20 bytes).
    pub const PROCESSOR: u8 = 0;
    /// Bus entry (8 bytes).
    pub const BUS: u8 = 1;
    /// I/O APIC entry (8 bytes).
    pub const IOAPIC: u8 = 2;
    /// I/O interrupt assignment entry (8 bytes).
    pub const IO_INTERRUPT: u8 = 3;
    /// Local interrupt assignment entry (8 bytes).
    pub const LOCAL_INTERRUPT: u8 = 4;
    /// Size of a processor entry.
    pub const PROCESSOR_SIZE: usize = 20;
    /// Size of every other entry.
    pub const OTHER_SIZE: usize = 8;
}

/// BDA word holding the EBDA segment.
pub const BDA_EBDA_SEGMENT: u64 = 0x40e;

/// Why an MP table was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MpError {
    /// The floating pointer selects a default configuration (no table);
    /// not supported.
    DefaultConfig(u8),
    /// The configuration table cannot be read.
    Unreadable(u64),
    /// Wrong configuration table signature.
    BadSignature,
    /// Configuration table checksum is not zero.
    BadChecksum,
    /// Specification revision is neither 1 nor 4.
    BadSpecRev(u8),
    /// Local APIC address is 0.
    NoLapic,
    /// Unknown entry type at this offset.
    BadEntry { kind: u8, offset: usize },
}

/// Is there a valid floating pointer at the start of `b`? (Linux
/// `smp_scan_config`: signature, length 1, zero checksum, spec 1 or 4.)
pub fn is_floating_pointer(b: &[u8]) -> bool {
    b.len() >= FLOATING_SIZE
        && &b[0..4] == FLOATING_SIG
        && b[8] == 1
        && checksum(&b[..FLOATING_SIZE]) == 0
        && (b[9] == 1 || b[9] == 4)
}

/// Scans `[start, start + len)` on 16-byte boundaries for a floating pointer.
pub fn scan(mem: &impl PhysMem, start: u64, len: usize) -> Option<u64> {
    let b = mem.bytes(start, len)?;
    (0..len.saturating_sub(FLOATING_SIZE - 1))
        .step_by(16)
        .find(|&off| {
            // Signature first: the common case costs one compare.
            b[off] == b'_' && is_floating_pointer(&b[off..])
        })
        .map(|off| start + off as u64)
}

/// The areas searched, in order: the first KiB of the EBDA (segment at BDA
/// 0x40E, when it is set and below 640 KiB), the last KiB of base memory
/// (639 KiB), and the BIOS ROM 0xF0000-0xFFFFF.
pub fn search_areas(ebda_segment: u16) -> [(u64, usize); 3] {
    let ebda = u64::from(ebda_segment) << 4;
    let ebda = if (0x400..0xa0000).contains(&ebda) {
        ebda
    } else {
        0
    };
    [(ebda, 0x400), (639 * 0x400, 0x400), (0xf0000, 0x10000)]
}

/// Finds the floating pointer; returns its address.
pub fn find(mem: &impl PhysMem) -> Option<u64> {
    let seg = mem
        .bytes(BDA_EBDA_SEGMENT, 2)
        .map(|b| u16_at(b, 0))
        .unwrap_or(0);
    search_areas(seg)
        .into_iter()
        .filter(|&(start, _)| start != 0)
        .find_map(|(start, len)| scan(mem, start, len))
}

/// Reads the configuration table the floating pointer at `fp` points to.
pub fn parse(mem: &impl PhysMem, fp: u64) -> Result<Topology, MpError> {
    let f = mem
        .bytes(fp, FLOATING_SIZE)
        .ok_or(MpError::Unreadable(fp))?;
    let feature1 = u8_at(f, 11);
    if feature1 != 0 {
        return Err(MpError::DefaultConfig(feature1));
    }
    let table = u64::from(u32_at(f, 4));
    let header = mem
        .bytes(table, CONFIG_HEADER_SIZE)
        .ok_or(MpError::Unreadable(table))?;
    if &header[0..4] != CONFIG_SIG {
        return Err(MpError::BadSignature);
    }
    let length = usize::from(u16_at(header, 4));
    let spec = u8_at(header, 6);
    let lapic = u32_at(header, 36);
    let t = mem.bytes(table, length).ok_or(MpError::Unreadable(table))?;
    if length < CONFIG_HEADER_SIZE || checksum(t) != 0 {
        return Err(MpError::BadChecksum);
    }
    if spec != 1 && spec != 4 {
        return Err(MpError::BadSpecRev(spec));
    }
    if lapic == 0 {
        return Err(MpError::NoLapic);
    }
    let mut topo = Topology::new(Source::MpTable, table);
    topo.lapic_addr = u64::from(lapic);
    // Bus ids that are ISA buses (ids are 8-bit).
    let mut isa_bus = [false; 256];
    let mut off = CONFIG_HEADER_SIZE;
    while off < length {
        let kind = t[off];
        let size = if kind == entry::PROCESSOR {
            entry::PROCESSOR_SIZE
        } else {
            entry::OTHER_SIZE
        };
        if off + size > length {
            return Err(MpError::BadEntry { kind, offset: off });
        }
        let e = &t[off..off + size];
        match kind {
            entry::PROCESSOR => {
                let flags = e[3];
                topo.add_cpu(Cpu {
                    apic_id: u32::from(e[1]),
                    enabled: flags & 1 != 0,
                    bsp: flags & 2 != 0,
                });
            }
            entry::BUS => {
                if &e[2..8] == b"ISA   " {
                    isa_bus[usize::from(e[1])] = true;
                }
            }
            entry::IOAPIC => {
                if e[3] & 1 != 0 {
                    let _ = topo.ioapics.push(IoApic {
                        id: e[1],
                        addr: u64::from(u32_at(e, 4)),
                        gsi_base: None,
                    });
                }
            }
            entry::IO_INTERRUPT => {
                // Vectored interrupts (type 0, INT) from an ISA bus.
                let (irq_type, flags, bus, irq, ioapic_id, pin) =
                    (e[1], u16_at(e, 2), e[4], e[5], e[6], e[7]);
                if irq_type == 0 && isa_bus[usize::from(bus)] && (irq != pin || flags != 0) {
                    let _ = topo.isa_routes.push(IsaRoute {
                        irq,
                        target: RouteTarget::Pin { ioapic_id, pin },
                        flags,
                    });
                }
            }
            entry::LOCAL_INTERRUPT => {}
            _ => return Err(MpError::BadEntry { kind, offset: off }),
        }
        off += size;
    }
    Ok(topo)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testmem::TestMem;

    /// Builds an MP table the way VMMs do (one bus, one I/O APIC, ISA IRQs).
    pub(crate) struct Builder {
        entries: Vec<Vec<u8>>,
        spec: u8,
        lapic: u32,
    }

    impl Builder {
        fn new() -> Self {
            Self {
                entries: vec![],
                spec: 4,
                lapic: 0xfee0_0000,
            }
        }

        fn cpu(mut self, apic_id: u8, flags: u8) -> Self {
            let mut e = vec![0u8; 20];
            e[0] = entry::PROCESSOR;
            e[1] = apic_id;
            e[2] = 0x14;
            e[3] = flags;
            e[4..8].copy_from_slice(&0x600u32.to_le_bytes());
            self.entries.push(e);
            self
        }

        fn bus(mut self, id: u8, name: &[u8; 6]) -> Self {
            let mut e = vec![entry::BUS, id];
            e.extend_from_slice(name);
            self.entries.push(e);
            self
        }

        fn ioapic(mut self, id: u8, flags: u8, addr: u32) -> Self {
            let mut e = vec![entry::IOAPIC, id, 0x11, flags];
            e.extend_from_slice(&addr.to_le_bytes());
            self.entries.push(e);
            self
        }

        fn intsrc(mut self, flags: u16, bus: u8, irq: u8, ioapic: u8, pin: u8) -> Self {
            let mut e = vec![entry::IO_INTERRUPT, 0];
            e.extend_from_slice(&flags.to_le_bytes());
            e.extend_from_slice(&[bus, irq, ioapic, pin]);
            self.entries.push(e);
            self
        }

        fn lintsrc(mut self) -> Self {
            self.entries
                .push(vec![entry::LOCAL_INTERRUPT, 3, 0, 0, 0, 0, 0, 0]);
            self
        }

        fn raw(mut self, e: &[u8]) -> Self {
            self.entries.push(e.to_vec());
            self
        }

        /// Writes floating pointer at `fp` and table right after it.
        fn write(&self, mem: &mut TestMem, fp: u64) {
            let table_addr = fp + 16;
            let mut t = vec![0u8; CONFIG_HEADER_SIZE];
            t[0..4].copy_from_slice(CONFIG_SIG);
            t[6] = self.spec;
            t[8..16].copy_from_slice(b"TESTOEM ");
            t[16..28].copy_from_slice(b"TESTPRODUCT ");
            t[34..36].copy_from_slice(&(self.entries.len() as u16).to_le_bytes());
            t[36..40].copy_from_slice(&self.lapic.to_le_bytes());
            for e in &self.entries {
                t.extend_from_slice(e);
            }
            let len = t.len() as u16;
            t[4..6].copy_from_slice(&len.to_le_bytes());
            t[7] = 0u8.wrapping_sub(checksum(&t));
            let mut f = vec![0u8; 16];
            f[0..4].copy_from_slice(FLOATING_SIG);
            f[4..8].copy_from_slice(&(table_addr as u32).to_le_bytes());
            f[8] = 1;
            f[9] = 4;
            f[10] = 0u8.wrapping_sub(checksum(&f));
            mem.write(fp, &f);
            mem.write(table_addr, &t);
        }
    }

    fn standard(cpus: u8) -> Builder {
        let mut b = Builder::new();
        for i in 0..cpus {
            b = b.cpu(i, if i == 0 { 3 } else { 1 });
        }
        b = b.bus(0, b"ISA   ").ioapic(cpus, 1, 0xfec0_0000);
        for irq in 0..16 {
            b = b.intsrc(0, 0, irq, cpus, irq);
        }
        b.lintsrc()
    }

    /// Low memory as a PC has it: BDA, base memory, EBDA, BIOS area.
    fn low_mem() -> TestMem {
        let mut m = TestMem::default();
        m.zeroed(0x400, 0x100);
        m.zeroed(0x8_0000, 0x2_0000);
        m.zeroed(0xe_0000, 0x2_0000);
        m
    }

    #[test]
    fn finds_in_last_kib_of_base_memory() {
        let mut m = low_mem();
        standard(4).write(&mut m, 0x9fc00);
        let fp = find(&m).unwrap();
        assert_eq!(fp, 0x9fc00);
        let t = parse(&m, fp).unwrap();
        assert_eq!(t.source, Source::MpTable);
        assert_eq!(t.table_addr, 0x9fc10);
        assert_eq!(t.lapic_addr, 0xfee0_0000);
        assert_eq!(t.cpus.len(), 4);
        assert_eq!(t.enabled_cpus().count(), 4);
        assert!(t.cpus.as_slice()[0].bsp);
        assert!(!t.cpus.as_slice()[1].bsp);
        assert_eq!(t.cpus.as_slice()[3].apic_id, 3);
        assert_eq!(t.ioapics.len(), 1);
        assert_eq!(t.ioapics.as_slice()[0].id, 4);
        assert_eq!(t.ioapics.as_slice()[0].addr, 0xfec0_0000);
        assert_eq!(t.ioapics.as_slice()[0].gsi_base, None);
        // Identity ISA assignments are not recorded.
        assert!(t.isa_routes.is_empty());
    }

    #[test]
    fn finds_in_ebda_and_bios_area() {
        let mut m = low_mem();
        m.write(0x40e, &(0x9000u16).to_le_bytes()); // EBDA at 0x90000
        standard(2).write(&mut m, 0x90040);
        assert_eq!(find(&m), Some(0x90040));

        let mut m = low_mem();
        standard(1).write(&mut m, 0xf5a30);
        assert_eq!(find(&m), Some(0xf5a30));
        assert_eq!(parse(&m, 0xf5a30).unwrap().cpus.len(), 1);
    }

    #[test]
    fn ignores_unaligned_and_bad_checksums() {
        let mut m = low_mem();
        standard(1).write(&mut m, 0xf0008);
        assert_eq!(find(&m), None);
        let mut m = low_mem();
        standard(1).write(&mut m, 0xf0000);
        m.write(0xf000a, &[0x55]); // break the floating pointer checksum
        assert_eq!(find(&m), None);
        assert_eq!(find(&TestMem::default()), None);
    }

    #[test]
    fn rejects_bad_tables() {
        let mut m = low_mem();
        standard(2).write(&mut m, 0xf0000);
        m.write(0xf0010 + 50, &[0xaa]);
        assert_eq!(parse(&m, 0xf0000).unwrap_err(), MpError::BadChecksum);

        let mut m = low_mem();
        let mut b = standard(2);
        b.spec = 2;
        b.write(&mut m, 0xf0000);
        assert_eq!(parse(&m, 0xf0000).unwrap_err(), MpError::BadSpecRev(2));

        let mut m = low_mem();
        let mut b = standard(1);
        b.lapic = 0;
        b.write(&mut m, 0xf0000);
        assert_eq!(parse(&m, 0xf0000).unwrap_err(), MpError::NoLapic);

        let mut m = low_mem();
        standard(1)
            .raw(&[9, 0, 0, 0, 0, 0, 0, 0])
            .write(&mut m, 0xf0000);
        assert!(matches!(
            parse(&m, 0xf0000),
            Err(MpError::BadEntry { kind: 9, .. })
        ));

        let mut m = low_mem();
        standard(1).write(&mut m, 0xf0000);
        m.write(0xf0010, b"XCMP");
        assert_eq!(parse(&m, 0xf0000).unwrap_err(), MpError::BadSignature);
    }

    #[test]
    fn default_configuration_is_refused() {
        let mut m = low_mem();
        let mut f = vec![0u8; 16];
        f[0..4].copy_from_slice(FLOATING_SIG);
        f[8] = 1;
        f[9] = 4;
        f[11] = 5;
        f[10] = 0u8.wrapping_sub(checksum(&f));
        m.write(0xf0000, &f);
        assert_eq!(find(&m), Some(0xf0000));
        assert_eq!(parse(&m, 0xf0000).unwrap_err(), MpError::DefaultConfig(5));
    }

    #[test]
    fn disabled_cpus_ioapics_and_overrides() {
        let mut m = low_mem();
        Builder::new()
            .cpu(0, 3)
            .cpu(1, 0)
            .cpu(2, 1)
            .bus(0, b"PCI   ")
            .bus(1, b"ISA   ")
            .ioapic(8, 0, 0xfec1_0000)
            .ioapic(9, 1, 0xfec0_0000)
            .intsrc(0, 1, 0, 9, 2) // ISA IRQ0 -> pin 2
            .intsrc(0xf, 1, 9, 9, 9) // level, active low
            .intsrc(0, 1, 4, 9, 4) // identity: not recorded
            .intsrc(0, 0, 5, 9, 7) // PCI bus: not ISA
            .write(&mut m, 0x9fc00);
        let t = parse(&m, find(&m).unwrap()).unwrap();
        assert_eq!(t.cpus.len(), 3);
        let enabled: Vec<u32> = t.enabled_cpus().map(|c| c.apic_id).collect();
        assert_eq!(enabled, vec![0, 2]);
        assert_eq!(t.ioapics.len(), 1);
        assert_eq!(t.ioapics.as_slice()[0].id, 9);
        assert_eq!(t.isa_routes.len(), 2);
        assert_eq!(
            t.isa_route(0).unwrap().target,
            RouteTarget::Pin {
                ioapic_id: 9,
                pin: 2
            }
        );
        assert_eq!(t.isa_route(9).unwrap().flags, 0xf);
        assert_eq!(t.isa_route(4), None);
        assert_eq!(t.isa_route(5), None);
    }

    #[test]
    fn many_cpus() {
        let mut m = low_mem();
        let mut b = Builder::new();
        for i in 0..255u8 {
            b = b.cpu(i, 1);
        }
        b.write(&mut m, 0xe0000 + 0x10000);
        let t = parse(&m, 0xf0000).unwrap();
        assert_eq!(t.enabled_cpus().count(), 255);
    }
}
