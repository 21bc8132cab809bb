//! CPUID for each vCPU: what KVM supports, with the topology of one vCPU per socket (StratoVirt's
//! default, as `query-cpus` shows: socket-id N, core-id 0, thread-id 0), the APIC ids and the
//! host's brand string.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
const LEAF_BRAND_LAST: u32 = 0x8000_0004;

/// Leaf 1 ECX bit 31: running under a hypervisor.
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: more than one logical processor per package.
pub const EDX_HTT: u32 = 1 << 28;
/// Leaf 0xb level types.
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

/// The brand string leaves as the host reports them: (eax, ebx, ecx, edx) for
/// 0x80000002..=0x80000004.
pub fn host_brand_string() -> [[u32; 4]; 3] {
    let mut out = [[0u32; 4]; 3];
    for (i, leaf) in (LEAF_BRAND_FIRST..=LEAF_BRAND_LAST).enumerate() {
        let r = std::arch::x86_64::__cpuid(leaf);
        out[i] = [r.eax, r.ebx, r.ecx, r.edx];
    }
    out
}

/// Rewrites the supported CPUID into the one vCPU `cpu_id` sees.
pub fn filter(cpuid: &mut CpuId, cpu_id: u8, brand: &[[u32; 4]; 3]) {
    for e in cpuid.as_mut_slice() {
        patch_entry(e, cpu_id, brand);
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, cpu_id: u8, brand: &[[u32; 4]; 3]) {
    match e.function {
        LEAF_FEATURES => {
            // EBX: APIC id [31:24], logical processors per package [23:16] = 1,
            // CLFLUSH line size [15:8] = 8 quadwords.
            e.ebx = (u32::from(cpu_id) << 24) | (1 << 16) | (8 << 8);
            e.ecx |= ECX_HYPERVISOR;
            e.edx &= !EDX_HTT;
        }
        LEAF_CACHE => {
            // One core per package, one thread per cache.
            e.eax &= !(0x3f << 26 | 0xfff << 14);
        }
        LEAF_PMU => {
            // No virtual PMU.
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            e.flags |= KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
            e.edx = u32::from(cpu_id);
            match e.index {
                0 => {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (LEVEL_SMT << 8) | e.index;
                }
                1 => {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (LEVEL_CORE << 8) | e.index;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        f if (LEAF_BRAND_FIRST..=LEAF_BRAND_LAST).contains(&f) => {
            let [a, b, c, d] = brand[(f - LEAF_BRAND_FIRST) as usize];
            e.eax = a;
            e.ebx = b;
            e.ecx = c;
            e.edx = d;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: 0xffff_ffff,
            ebx: 0xffff_ffff,
            ecx: 0x7fff_ffff,
            edx: 0xffff_ffff,
            ..Default::default()
        }
    }

    fn sample() -> CpuId {
        let entries = [
            entry(0x1, 0),
            entry(0x4, 0),
            entry(0x4, 1),
            entry(0xa, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
            entry(0x8000_0002, 0),
            entry(0x8000_0003, 0),
            entry(0x8000_0004, 0),
        ];
        CpuId::from_entries(&entries).unwrap()
    }

    fn get(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .unwrap()
    }

    #[test]
    fn leaf1_has_apic_id_and_hypervisor_bit() {
        let brand = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
        for cpu in [0u8, 1, 7, 253] {
            let mut c = sample();
            filter(&mut c, cpu, &brand);
            let l1 = get(&c, 1, 0);
            assert_eq!(l1.ebx >> 24, cpu as u32, "initial APIC id");
            assert_eq!((l1.ebx >> 16) & 0xff, 1, "logical processors per package");
            assert_eq!((l1.ebx >> 8) & 0xff, 8, "CLFLUSH size");
            assert_ne!(l1.ecx & ECX_HYPERVISOR, 0);
            assert_eq!(l1.edx & EDX_HTT, 0);
            assert_eq!(l1.eax, 0xffff_ffff, "signature untouched");
        }
    }

    #[test]
    fn topology_is_one_cpu_per_socket() {
        let brand = host_brand_string();
        let mut c = sample();
        filter(&mut c, 5, &brand);
        for i in [0, 1] {
            let l4 = get(&c, 4, i);
            assert_eq!(l4.eax >> 26, 0, "cores per package - 1");
            assert_eq!((l4.eax >> 14) & 0xfff, 0, "threads sharing the cache - 1");
        }
        let smt = get(&c, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 5));
        let core = get(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (0, 1, 0x201, 5));
        let inval = get(&c, 0xb, 2);
        assert_eq!((inval.eax, inval.ebx, inval.ecx & 0xff00), (0, 0, 0));
        assert_ne!(smt.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0);
        let pmu = get(&c, 0xa, 0);
        assert_eq!((pmu.eax, pmu.ebx, pmu.ecx, pmu.edx), (0, 0, 0, 0));
    }

    #[test]
    fn brand_string_comes_from_the_host() {
        let brand = host_brand_string();
        let mut c = sample();
        filter(&mut c, 0, &brand);
        for (i, f) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let e = get(&c, f, 0);
            assert_eq!([e.eax, e.ebx, e.ecx, e.edx], brand[i]);
        }
    }
}
