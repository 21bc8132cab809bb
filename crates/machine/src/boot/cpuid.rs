//! CPUID for each vCPU: what KVM supports, with the VM's topology (`-smp
//! ...,sockets=,cores=,threads=`; by default one vCPU per socket, StratoVirt's microvm
//! layout), the vCPU's APIC id and the host's brand string. The topology leaves (1, 4, 0xb,
//! 0x1f, and AMD's 0x80000008 and 0x8000001e) say what the MP table and QMP say.

use config::CpuTopology;
use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_PMU: u32 = 0xa;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const LEAF_BRAND_FIRST: u32 = 0x8000_0002;
const LEAF_BRAND_LAST: u32 = 0x8000_0004;
const LEAF_AMD_SIZES: u32 = 0x8000_0008;
const LEAF_AMD_TOPOLOGY: u32 = 0x8000_001e;

/// Leaf 1 ECX bit 31: running under a hypervisor.
pub const ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 24: the LAPIC timer's TSC-deadline mode.
pub const ECX_TSC_DEADLINE: u32 = 1 << 24;
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

/// One vCPU as CPUID describes it.
#[derive(Debug, Clone, Copy)]
pub struct CpuIdentity {
    /// Its index (QMP's `CPU`).
    pub index: u32,
    pub topology: CpuTopology,
}

impl CpuIdentity {
    fn apic_id(&self) -> u32 {
        self.topology.apic_id(self.index)
    }
}

/// Rewrites the supported CPUID into the one vCPU `cpu` sees.
pub fn filter(cpuid: &mut CpuId, cpu: CpuIdentity, brand: &[[u32; 4]; 3]) {
    complete_topology_leaf(cpuid);
    for e in cpuid.as_mut_slice() {
        patch_entry(e, cpu, brand);
    }
}

/// Offers the LAPIC's TSC-deadline timer mode. KVM emulates it whenever it has
/// `KVM_CAP_TSC_DEADLINE_TIMER` but leaves the bit out of the supported CPUID, since only the
/// VMM knows the LAPIC is in the kernel. Linux then arms its timer with one MSR write instead
/// of programming the LAPIC counter.
pub fn offer_tsc_deadline(cpuid: &mut CpuId) {
    for e in cpuid.as_mut_slice() {
        if e.function == LEAF_FEATURES {
            e.ecx |= ECX_TSC_DEADLINE;
        }
    }
}

/// KVM lists leaf 0xb with the host's levels, which on some hosts (AMD) is the SMT level
/// alone: add the core level and the terminating invalid level, which `patch_entry` fills.
fn complete_topology_leaf(cpuid: &mut CpuId) {
    if !cpuid.as_slice().iter().any(|e| e.function == LEAF_TOPOLOGY) {
        return;
    }
    for index in 0..=2 {
        let present = cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == LEAF_TOPOLOGY && e.index == index);
        if !present {
            let e = kvm_cpuid_entry2 {
                function: LEAF_TOPOLOGY,
                index,
                flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                ..Default::default()
            };
            if let Err(err) = cpuid.push(e) {
                log::warn!("CPUID: cannot add leaf 0xb subleaf {index}: {err:?}");
            }
        }
    }
}

fn patch_entry(e: &mut kvm_cpuid_entry2, cpu: CpuIdentity, brand: &[[u32; 4]; 3]) {
    let t = cpu.topology;
    let apic_id = cpu.apic_id();
    let (thread_bits, core_bits) = (t.thread_bits(), t.core_bits());
    let per_socket = t.per_socket();
    match e.function {
        LEAF_FEATURES => {
            // EBX: APIC id [31:24], logical processors per package [23:16],
            // CLFLUSH line size [15:8] = 8 quadwords.
            e.ebx = ((apic_id & 0xff) << 24) | ((per_socket & 0xff) << 16) | (8 << 8);
            e.ecx |= ECX_HYPERVISOR;
            if per_socket > 1 {
                e.edx |= EDX_HTT;
            } else {
                e.edx &= !EDX_HTT;
            }
        }
        LEAF_CACHE => {
            // EAX[31:26]: addressable core ids in the package - 1; EAX[25:14]: addressable
            // ids sharing this cache - 1: a core's threads for L1 and L2, the package for L3.
            let level = (e.eax >> 5) & 0x7;
            let sharing_bits = if level >= 3 {
                core_bits + thread_bits
            } else {
                thread_bits
            };
            e.eax &= !(0x3f << 26 | 0xfff << 14);
            e.eax |= (((1u32 << core_bits) - 1) & 0x3f) << 26;
            e.eax |= (((1u32 << sharing_bits) - 1) & 0xfff) << 14;
        }
        LEAF_PMU => {
            // No virtual PMU.
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
            // Per level: EAX = shift to the next level's id, EBX = logical processors at
            // this level, ECX = level type and number; EDX = the x2APIC id.
            e.flags |= KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
            e.edx = apic_id;
            match e.index {
                0 => {
                    e.eax = thread_bits;
                    e.ebx = t.threads;
                    e.ecx = (LEVEL_SMT << 8) | e.index;
                }
                1 => {
                    e.eax = core_bits + thread_bits;
                    e.ebx = per_socket;
                    e.ecx = (LEVEL_CORE << 8) | e.index;
                }
                _ => {
                    e.eax = 0;
                    e.ebx = 0;
                    e.ecx = e.index;
                }
            }
        }
        LEAF_AMD_SIZES => {
            // ECX: ApicIdCoreIdSize [15:12], logical processors in the package - 1 [7:0].
            e.ecx &= !0xf0ff;
            e.ecx |= ((core_bits + thread_bits) << 12) | ((per_socket - 1) & 0xff);
        }
        LEAF_AMD_TOPOLOGY => {
            // EAX: extended APIC id; EBX: threads per core - 1 [15:8], core id [7:0];
            // ECX: one node per socket, its id in [7:0].
            let p = t.position(cpu.index);
            e.eax = apic_id;
            e.ebx = (((t.threads - 1) & 0xff) << 8) | (p.core & 0xff);
            e.ecx = p.socket & 0xff;
            e.edx = 0;
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

    fn one(index: u32) -> CpuIdentity {
        CpuIdentity {
            index,
            topology: CpuTopology::one_per_socket(254),
        }
    }

    fn sample() -> CpuId {
        let mut l1 = entry(0x4, 0);
        l1.eax = 1 << 5; // level 1 data cache
        let mut l2 = entry(0x4, 2);
        l2.eax = 2 << 5;
        let mut l3 = entry(0x4, 3);
        l3.eax = 3 << 5;
        let entries = [
            entry(0x1, 0),
            l1,
            l2,
            l3,
            entry(0xa, 0),
            entry(0xb, 0),
            entry(0xb, 1),
            entry(0xb, 2),
            entry(0x8000_0002, 0),
            entry(0x8000_0003, 0),
            entry(0x8000_0004, 0),
            entry(0x8000_0008, 0),
            entry(0x8000_001e, 0),
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
    fn tsc_deadline_is_offered_in_leaf_1_only() {
        let mut c = CpuId::from_entries(&[entry(0x1, 0), entry(0x7, 0)]).unwrap();
        c.as_mut_slice()[0].ecx = 0;
        c.as_mut_slice()[1].ecx = 0;
        offer_tsc_deadline(&mut c);
        assert_eq!(c.as_slice()[0].ecx, ECX_TSC_DEADLINE);
        assert_eq!(c.as_slice()[1].ecx, 0);
    }

    #[test]
    fn leaf1_has_apic_id_and_hypervisor_bit() {
        let brand = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]];
        for cpu in [0u32, 1, 7, 253] {
            let mut c = sample();
            filter(&mut c, one(cpu), &brand);
            let l1 = get(&c, 1, 0);
            assert_eq!(l1.ebx >> 24, cpu, "initial APIC id");
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
        filter(&mut c, one(5), &brand);
        for i in [0, 2, 3] {
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
        assert_eq!(get(&c, 0x8000_0008, 0).ecx & 0xf0ff, 0);
        let amd = get(&c, 0x8000_001e, 0);
        assert_eq!((amd.eax, amd.ebx, amd.ecx), (5, 0, 5));
    }

    #[test]
    fn a_host_listing_only_the_smt_level_gets_the_core_level_too() {
        let mut c = CpuId::from_entries(&[entry(0x1, 0), entry(0xb, 0)]).unwrap();
        let t = CpuTopology {
            sockets: 1,
            cores: 4,
            threads: 1,
        };
        filter(
            &mut c,
            CpuIdentity {
                index: 2,
                topology: t,
            },
            &host_brand_string(),
        );
        let core = get(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 4, 0x201, 2));
        let end = get(&c, 0xb, 2);
        assert_eq!((end.eax, end.ebx, end.ecx & 0xff00), (0, 0, 0));
        let mut none = CpuId::from_entries(&[entry(0x1, 0)]).unwrap();
        filter(
            &mut none,
            CpuIdentity {
                index: 0,
                topology: t,
            },
            &host_brand_string(),
        );
        assert_eq!(
            none.as_slice().len(),
            1,
            "no leaf 0xb is added where KVM has none"
        );
    }

    #[test]
    fn topology_of_sockets_cores_and_threads() {
        // 2 sockets x 3 cores x 2 threads: vCPU 7 is socket 1, core 0, thread 1; APIC id 9.
        let t = CpuTopology {
            sockets: 2,
            cores: 3,
            threads: 2,
        };
        let mut c = sample();
        filter(
            &mut c,
            CpuIdentity {
                index: 7,
                topology: t,
            },
            &host_brand_string(),
        );
        let l1 = get(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, 9);
        assert_eq!((l1.ebx >> 16) & 0xff, 6, "logical processors per package");
        assert_ne!(l1.edx & EDX_HTT, 0);
        let smt = get(&c, 0xb, 0);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (1, 2, 0x100, 9));
        let core = get(&c, 0xb, 1);
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (3, 6, 0x201, 9));
        let (l1d, l3) = (get(&c, 4, 0), get(&c, 4, 3));
        assert_eq!(l1d.eax >> 26, 3, "core ids 0..=3 addressable");
        assert_eq!((l1d.eax >> 14) & 0xfff, 1, "a core's two threads share L1");
        assert_eq!((l3.eax >> 14) & 0xfff, 7, "the package shares L3");
        assert_eq!(l1d.eax & 0xff, 1 << 5, "cache level kept");
        let sizes = get(&c, 0x8000_0008, 0);
        assert_eq!((sizes.ecx >> 12) & 0xf, 3);
        assert_eq!(sizes.ecx & 0xff, 5);
        let amd = get(&c, 0x8000_001e, 0);
        assert_eq!((amd.eax, amd.ebx, amd.ecx), (9, 0x100, 1));
    }

    #[test]
    fn brand_string_comes_from_the_host() {
        let brand = host_brand_string();
        let mut c = sample();
        filter(&mut c, one(0), &brand);
        for (i, f) in (0x8000_0002u32..=0x8000_0004).enumerate() {
            let e = get(&c, f, 0);
            assert_eq!([e.eax, e.ebx, e.ecx, e.edx], brand[i]);
        }
    }
}
