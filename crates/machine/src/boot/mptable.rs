//! The Intel MultiProcessor Specification 1.4 table that tells the guest about every vCPU, the
//! IOAPIC and how ISA IRQs are wired. Linux looks for the floating pointer in the first KiB of the
//! EBDA, the last KiB of base memory and 0xF0000-0xFFFFF; we put it at the EBDA's start
//! (0x9fc00, which is also the last KiB of base memory) with the configuration table right after.

use crate::layout::{APIC_ADDR, IOAPIC_ADDR, IOAPIC_PINS};

const MPC_SIGNATURE: &[u8; 4] = b"PCMP";
const MPF_SIGNATURE: &[u8; 4] = b"_MP_";
const MPC_SPEC_REV: u8 = 4;
const MPC_OEM: &[u8; 8] = b"SVIRT   ";
const MPC_PRODUCT: &[u8; 12] = b"MICROVM     ";
const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const CPU_STEPPING: u32 = 0x600;
const CPU_FEATURE_APIC: u32 = 0x200;
const CPU_FEATURE_FPU: u32 = 0x001;

const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IOINT: u8 = 3;
const ENTRY_LINT: u8 = 4;

const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
const IRQ_TYPE_INT: u8 = 0;
const IRQ_TYPE_NMI: u8 = 1;
const IRQ_TYPE_EXTINT: u8 = 3;
/// Polarity and trigger "conform to the bus" (edge, active high on ISA).
const IRQ_FLAGS_DEFAULT: u16 = 0;

/// Size of the floating pointer structure.
pub const MPF_SIZE: usize = 16;
/// Size of the configuration table header.
pub const MPC_HEADER_SIZE: usize = 44;

/// The IOAPIC's id: right after the highest vCPU APIC id.
pub fn ioapic_id(apic_ids: &[u8]) -> u8 {
    apic_ids.iter().max().map_or(0, |m| m.saturating_add(1))
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds the floating pointer followed by the configuration table, to be written at `base`.
/// `apic_ids` are the vCPUs' APIC ids in vCPU order (the first is the boot processor); the
/// topology decides them, see `config::CpuTopology::apic_id`.
pub fn build(base: u64, apic_ids: &[u8]) -> Vec<u8> {
    let table_addr = base + MPF_SIZE as u64;
    let ioapic = ioapic_id(apic_ids);

    let mut entries: Vec<u8> = Vec::new();
    let mut count: u16 = 0;
    for (i, &apic_id) in apic_ids.iter().enumerate() {
        let flags = CPU_ENABLED | if i == 0 { CPU_BOOTPROCESSOR } else { 0 };
        entries.extend_from_slice(&[ENTRY_PROCESSOR, apic_id, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_STEPPING.to_le_bytes());
        entries.extend_from_slice(&(CPU_FEATURE_APIC | CPU_FEATURE_FPU).to_le_bytes());
        entries.extend_from_slice(&[0u8; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[ENTRY_BUS, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[ENTRY_IOAPIC, ioapic, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    count += 1;
    for irq in 0..IOAPIC_PINS as u8 {
        entries.extend_from_slice(&[ENTRY_IOINT, IRQ_TYPE_INT]);
        entries.extend_from_slice(&IRQ_FLAGS_DEFAULT.to_le_bytes());
        entries.extend_from_slice(&[0, irq, ioapic, irq]);
        count += 1;
    }
    for (kind, lint) in [(IRQ_TYPE_EXTINT, 0u8), (IRQ_TYPE_NMI, 1u8)] {
        entries.extend_from_slice(&[ENTRY_LINT, kind]);
        entries.extend_from_slice(&IRQ_FLAGS_DEFAULT.to_le_bytes());
        entries.extend_from_slice(&[0, 0, 0xff, lint]);
        count += 1;
    }

    let table_len = MPC_HEADER_SIZE + entries.len();
    let mut table = Vec::with_capacity(table_len);
    table.extend_from_slice(MPC_SIGNATURE);
    table.extend_from_slice(&(table_len as u16).to_le_bytes());
    table.push(MPC_SPEC_REV);
    table.push(0); // checksum, filled below
    table.extend_from_slice(MPC_OEM);
    table.extend_from_slice(MPC_PRODUCT);
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(APIC_ADDR as u32).to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0); // reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(MPF_SIZE);
    mpf.extend_from_slice(MPF_SIGNATURE);
    mpf.extend_from_slice(&(table_addr as u32).to_le_bytes());
    mpf.push(1); // length in 16-byte units
    mpf.push(MPC_SPEC_REV);
    mpf.push(0); // checksum, filled below
    mpf.extend_from_slice(&[0u8; 5]); // feature bytes: no default config, no IMCR
    mpf[10] = checksum(&mpf);

    mpf.extend_from_slice(&table);
    mpf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_le_bytes([b[o], b[o + 1]])
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn dense(n: u8) -> Vec<u8> {
        (0..n).collect()
    }

    #[test]
    fn floating_pointer_is_valid() {
        let t = build(0x9fc00, &dense(2));
        assert_eq!(&t[0..4], b"_MP_");
        assert_eq!(u32_at(&t, 4), 0x9fc10);
        assert_eq!(t[8], 1);
        assert_eq!(t[9], 4);
        assert_eq!(sum(&t[..16]), 0);
        assert_eq!(&t[11..16], &[0; 5]);
    }

    #[test]
    fn config_table_lists_every_cpu_bus_ioapic_and_irq() {
        for cpus in [1u8, 2, 4, 8, 254] {
            let t = build(0x9fc00, &dense(cpus));
            let c = &t[16..];
            assert_eq!(&c[0..4], b"PCMP");
            let len = u16_at(c, 4) as usize;
            assert_eq!(len, c.len());
            assert_eq!(sum(&c[..len]), 0, "table checksum");
            assert_eq!(u32_at(c, 36), 0xfee0_0000);
            let count = u16_at(c, 34) as usize;
            assert_eq!(count, cpus as usize + 1 + 1 + 24 + 2);

            let mut off = MPC_HEADER_SIZE;
            let mut seen_cpus = Vec::new();
            let mut ioints = 0;
            let mut lints = Vec::new();
            for _ in 0..count {
                match c[off] {
                    0 => {
                        seen_cpus.push((c[off + 1], c[off + 3]));
                        off += 20;
                    }
                    1 => {
                        assert_eq!(&c[off + 2..off + 8], b"ISA   ");
                        off += 8;
                    }
                    2 => {
                        assert_eq!(c[off + 1], cpus, "IOAPIC id after the APIC ids");
                        assert_eq!(c[off + 3], 1);
                        assert_eq!(u32_at(c, off + 4), 0xfec0_0000);
                        off += 8;
                    }
                    3 => {
                        assert_eq!(c[off + 1], 0, "INT");
                        assert_eq!(c[off + 5], c[off + 7], "ISA irq N is IOAPIC pin N");
                        assert_eq!(c[off + 6], cpus);
                        ioints += 1;
                        off += 8;
                    }
                    4 => {
                        lints.push((c[off + 1], c[off + 7]));
                        off += 8;
                    }
                    t => panic!("unexpected entry type {t}"),
                }
            }
            assert_eq!(off, len);
            assert_eq!(ioints, 24);
            assert_eq!(lints, vec![(3, 0), (1, 1)], "LINT0 ExtINT, LINT1 NMI");
            assert_eq!(seen_cpus.len(), cpus as usize);
            assert_eq!(seen_cpus[0], (0, 3), "cpu 0 is enabled and the BSP");
            for (i, (id, flags)) in seen_cpus.iter().enumerate().skip(1) {
                assert_eq!((*id as usize, *flags), (i, 1));
            }
        }
    }

    #[test]
    fn sparse_apic_ids_of_a_topology_are_listed_and_the_ioapic_follows() {
        // 2 sockets x 3 cores: cores take two bits, so ids 0, 1, 2, 4, 5, 6.
        let ids = [0u8, 1, 2, 4, 5, 6];
        let t = build(0x9fc00, &ids);
        let c = &t[16..];
        let procs: Vec<u8> = (0..ids.len())
            .map(|i| c[MPC_HEADER_SIZE + 20 * i + 1])
            .collect();
        assert_eq!(procs, ids);
        let ioapic = MPC_HEADER_SIZE + 20 * ids.len() + 8;
        assert_eq!((c[ioapic], c[ioapic + 1]), (2, 7));
        assert_eq!(ioapic_id(&ids), 7);
    }
}
