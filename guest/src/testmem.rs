//! A sparse fake physical memory for unit tests.

use crate::physmem::PhysMem;

/// Physical memory made of byte regions at given addresses.
#[derive(Default)]
pub struct TestMem {
    regions: Vec<(u64, Vec<u8>)>,
}

impl TestMem {
    /// Adds (or overwrites) bytes at `addr`, growing or creating a region.
    pub fn write(&mut self, addr: u64, data: &[u8]) {
        for (base, buf) in &mut self.regions {
            let end = *base + buf.len() as u64;
            if addr >= *base && addr <= end {
                let off = (addr - *base) as usize;
                if buf.len() < off + data.len() {
                    buf.resize(off + data.len(), 0);
                }
                buf[off..off + data.len()].copy_from_slice(data);
                return;
            }
        }
        self.regions.push((addr, data.to_vec()));
    }

    /// A zeroed region of `len` bytes at `addr`.
    pub fn zeroed(&mut self, addr: u64, len: usize) {
        self.write(addr, &vec![0; len]);
    }
}

impl PhysMem for TestMem {
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        self.regions.iter().find_map(|(base, buf)| {
            let off = addr.checked_sub(*base)? as usize;
            buf.get(off..off.checked_add(len)?)
        })
    }
}
