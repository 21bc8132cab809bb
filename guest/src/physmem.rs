//! Read access to guest-physical memory, abstracted so parsers run on the host.

/// Something that can hand out the bytes at a physical address.
pub trait PhysMem {
    /// The `len` bytes starting at physical address `addr`, or `None` when
    /// that range is not readable.
    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]>;
}
