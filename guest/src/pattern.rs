//! The memory test pattern: one u64 per 4 KiB page, derived from a seed and
//! the page address, so a wrong seed or a page that moved shows up.

/// Distance between tested words.
pub const STRIDE: u64 = 4096;

/// The value stored at `addr` for `seed` (a SplitMix64 finaliser of both).
pub fn value(seed: u64, addr: u64) -> u64 {
    let mut z = addr ^ seed.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn differs_by_seed_and_address() {
        let a = value(1, 0x200_0000);
        assert_ne!(a, value(2, 0x200_0000));
        assert_ne!(a, value(1, 0x200_1000));
        assert_eq!(a, value(1, 0x200_0000));
        // No seed makes neighbouring pages equal in a small sample.
        for seed in 0..64 {
            for page in 0..64u64 {
                assert_ne!(value(seed, page << 12), value(seed, (page + 1) << 12));
            }
        }
    }
}
