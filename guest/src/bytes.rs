//! Little-endian field access and checksums on byte slices.
//!
//! Out-of-range reads return 0 rather than panicking: callers check lengths
//! first, and a zero field is always "absent" in the structures parsed here.

/// Byte at `off`, or 0 when out of range.
pub fn u8_at(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// Little-endian u16 at `off`, or 0 when out of range.
pub fn u16_at(b: &[u8], off: usize) -> u16 {
    match b.get(off..off.wrapping_add(2)) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

/// Little-endian u32 at `off`, or 0 when out of range.
pub fn u32_at(b: &[u8], off: usize) -> u32 {
    match b.get(off..off.wrapping_add(4)) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Little-endian u64 at `off`, or 0 when out of range.
pub fn u64_at(b: &[u8], off: usize) -> u64 {
    match b.get(off..off.wrapping_add(8)) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

/// 8-bit sum of all bytes (0 for a valid MP/ACPI structure).
pub fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |acc, &x| acc.wrapping_add(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_bounds() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u8_at(&b, 8), 9);
        assert_eq!(u8_at(&b, 9), 0);
        assert_eq!(u16_at(&b, 0), 0x0201);
        assert_eq!(u16_at(&b, 8), 0);
        assert_eq!(u32_at(&b, 1), 0x0504_0302);
        assert_eq!(u64_at(&b, 0), 0x0807_0605_0403_0201);
        assert_eq!(u64_at(&b, 2), 0);
        assert_eq!(u32_at(&b, usize::MAX - 1), 0);
        assert_eq!(checksum(&[0xff, 0x01]), 0);
    }
}
