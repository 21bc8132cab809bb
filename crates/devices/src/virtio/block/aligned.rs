//! A bounce buffer whose start is aligned for O_DIRECT, without unsafe code: an over-sized
//! vector and the aligned window inside it.

/// Alignment of the bounce buffer: a page, which satisfies the memory alignment O_DIRECT asks
/// for on every common device (512 or 4096 bytes).
pub const BUF_ALIGN: usize = 4096;

/// A zero-initialized buffer of `len` bytes starting at a multiple of [`BUF_ALIGN`].
pub struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn new(len: usize) -> Self {
        let storage = vec![0u8; len + BUF_ALIGN];
        let start = storage.as_ptr().align_offset(BUF_ALIGN);
        // `align_offset` on a u8 pointer never fails and is < BUF_ALIGN, so the window fits.
        debug_assert!(start < BUF_ALIGN);
        Self {
            storage,
            start,
            len,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_aligned_and_sized() {
        for len in [0, 1, 512, 4096, 256 * 1024] {
            let mut b = AlignedBuf::new(len);
            assert_eq!(b.len(), len);
            let s = b.as_mut_slice();
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % BUF_ALIGN, 0);
            assert!(s.iter().all(|&x| x == 0));
        }
    }
}
