//! How the vCPUs are grouped into sockets, cores and threads (`-smp
//! N,sockets=S,cores=C,threads=T`), and the x86 APIC ids that follow from it: each level gets
//! the bits its count needs, as QEMU and real hardware number them, so a guest reading CPUID
//! leaf 0xb or the MP table sees the same topology QMP reports.

/// The number of each level; their product is the vCPU count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

/// Where one vCPU sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuPosition {
    pub socket: u32,
    pub core: u32,
    pub thread: u32,
}

/// Bits that hold `0..n`.
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

impl CpuTopology {
    /// StratoVirt's microvm default: every vCPU is a socket of its own.
    pub fn one_per_socket(vcpus: u32) -> Self {
        CpuTopology {
            sockets: vcpus,
            cores: 1,
            threads: 1,
        }
    }

    /// The number of vCPUs.
    pub fn vcpus(&self) -> u64 {
        u64::from(self.sockets) * u64::from(self.cores) * u64::from(self.threads)
    }

    /// Logical processors in one socket.
    pub fn per_socket(&self) -> u32 {
        self.cores * self.threads
    }

    /// APIC id bits for the thread within its core.
    pub fn thread_bits(&self) -> u32 {
        bits_for(self.threads)
    }

    /// APIC id bits for the core within its socket.
    pub fn core_bits(&self) -> u32 {
        bits_for(self.cores)
    }

    /// Where vCPU `index` (0-based, in QMP's order) sits: threads fill a core, cores a socket.
    pub fn position(&self, index: u32) -> CpuPosition {
        CpuPosition {
            socket: index / self.per_socket(),
            core: (index / self.threads) % self.cores,
            thread: index % self.threads,
        }
    }

    /// The APIC id of vCPU `index`: socket, core and thread fields of their own widths.
    pub fn apic_id(&self, index: u32) -> u32 {
        let p = self.position(index);
        let thread_bits = self.thread_bits();
        (p.socket << (self.core_bits() + thread_bits)) | (p.core << thread_bits) | p.thread
    }

    /// The highest APIC id of any vCPU.
    pub fn max_apic_id(&self) -> u32 {
        let n = u32::try_from(self.vcpus()).unwrap_or(u32::MAX);
        (0..n).map(|i| self.apic_id(i)).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_one_vcpu_per_socket_with_dense_ids() {
        let t = CpuTopology::one_per_socket(4);
        for i in 0..4 {
            let p = t.position(i);
            assert_eq!((p.socket, p.core, p.thread), (i, 0, 0));
            assert_eq!(t.apic_id(i), i);
        }
        assert_eq!(t.max_apic_id(), 3);
    }

    #[test]
    fn levels_get_their_own_bits() {
        let t = CpuTopology {
            sockets: 2,
            cores: 3,
            threads: 2,
        };
        assert_eq!((t.thread_bits(), t.core_bits()), (1, 2));
        let ids: Vec<u32> = (0..12).map(|i| t.apic_id(i)).collect();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
        let p = t.position(7);
        assert_eq!((p.socket, p.core, p.thread), (1, 0, 1));
        assert_eq!(t.max_apic_id(), 13);
        assert_eq!(t.per_socket(), 6);
        assert_eq!(t.vcpus(), 12);
    }

    #[test]
    fn bits() {
        assert_eq!(
            [1, 2, 3, 4, 5, 8, 9, 254].map(bits_for),
            [0, 1, 2, 2, 3, 3, 4, 8]
        );
    }
}
