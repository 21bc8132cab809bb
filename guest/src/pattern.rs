//! Test patterns derived from a seed.
//!
//! - Memory (`mem fill`): one u64 per 4 KiB page, [`value`] of the seed and
//!   the page address, so a wrong seed or a page that moved shows up.
//! - Disks (`blk write`): every 512-byte sector is 64 little-endian u64
//!   words, word `i` of disk sector `s` being
//!   `value(seed, s) + i * GOLDEN` (mod 2^64). One hash per sector and one
//!   add per word keeps it cheap under instruction emulation, and a sector
//!   written at the wrong place or with the wrong seed shows up.

/// Distance between tested words.
pub const STRIDE: u64 = 4096;

/// The 64-bit golden ratio constant (SplitMix64's increment).
pub const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Bytes per disk sector.
pub const SECTOR: usize = 512;

/// u64 words per disk sector.
pub const SECTOR_WORDS: usize = SECTOR / 8;

/// The value stored at `addr` for `seed` (a SplitMix64 finaliser of both).
pub fn value(seed: u64, addr: u64) -> u64 {
    let mut z = addr ^ seed.rotate_left(32) ^ GOLDEN;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Word `index` (0..64) of disk sector `sector` for `seed`.
pub fn disk_word(seed: u64, sector: u64, index: u64) -> u64 {
    value(seed, sector).wrapping_add(index.wrapping_mul(GOLDEN))
}

/// Fills `words` (a whole number of sectors, as u64 words) with the disk
/// pattern of `seed` for the sectors starting at `first_sector`.
pub fn fill_disk(seed: u64, first_sector: u64, words: &mut [u64]) {
    let mut sector = first_sector;
    for chunk in words.chunks_mut(SECTOR_WORDS) {
        let mut w = value(seed, sector);
        for slot in chunk {
            *slot = w.to_le();
            w = w.wrapping_add(GOLDEN);
        }
        sector = sector.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crc32::crc32;

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

    fn disk_bytes(seed: u64, first: u64, sectors: usize) -> Vec<u8> {
        let mut words = vec![0u64; sectors * SECTOR_WORDS];
        fill_disk(seed, first, &mut words);
        words
            .iter()
            .flat_map(|w| u64::from_le(*w).to_le_bytes())
            .collect()
    }

    #[test]
    fn disk_pattern_matches_the_documented_formula() {
        // Values computed independently (Python, docs/testkernel.md formula).
        assert_eq!(value(1, 0), 0x219f_c13d_6bc5_b015);
        assert_eq!(value(0x1234, 7), 0xa819_bb92_be8e_4faf);
        let d = disk_bytes(1, 0, 2);
        assert_eq!(&d[..8], &0x219f_c13d_6bc5_b015u64.to_le_bytes());
        assert_eq!(
            &d[8..16],
            &0x219f_c13d_6bc5_b015u64.wrapping_add(GOLDEN).to_le_bytes()
        );
        assert_eq!(&d[512..520], &value(1, 1).to_le_bytes());
        assert_eq!(crc32(&d), 0x1667_a93c);
        assert_eq!(crc32(&disk_bytes(42, 100, 8)), 0xbc27_725e);
        for i in 0..64 {
            let off = 512 + 8 * i as usize;
            assert_eq!(&d[off..off + 8], &disk_word(1, 1, i).to_le_bytes());
        }
    }

    #[test]
    fn disk_sectors_differ() {
        let a = disk_bytes(5, 0, 4);
        for s in 1..4 {
            assert_ne!(&a[..512], &a[s * 512..(s + 1) * 512]);
        }
        assert_ne!(disk_bytes(5, 0, 1), disk_bytes(6, 0, 1));
    }
}
