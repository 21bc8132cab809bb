//! Integer parsing (the way Linux's `simple_strtoull` and `memparse` do it)
//! and formatting into small stack buffers, without `core::fmt`.

/// Value of an ASCII digit in bases up to 16.
fn digit(c: u8) -> Option<u64> {
    match c {
        b'0'..=b'9' => Some(u64::from(c - b'0')),
        b'a'..=b'f' => Some(u64::from(c - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(c - b'A' + 10)),
        _ => None,
    }
}

/// Parses an unsigned integer in `base` (2..=16) from the start of `s`.
/// Returns the value and the rest, or `None` if no digit was consumed or the
/// value overflows.
pub fn parse_radix(s: &[u8], base: u64) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    let mut used = 0;
    for &c in s {
        match digit(c) {
            Some(d) if d < base => {
                value = value.checked_mul(base)?.checked_add(d)?;
                used += 1;
            }
            _ => break,
        }
    }
    if used == 0 {
        None
    } else {
        Some((value, &s[used..]))
    }
}

/// Like C's `strtoull(s, &end, 0)`: `0x`/`0X` means hex, a leading `0` octal,
/// anything else decimal. Returns the value and the unparsed rest.
pub fn parse_auto(s: &[u8]) -> Option<(u64, &[u8])> {
    if s.len() >= 2 && s[0] == b'0' && (s[1] == b'x' || s[1] == b'X') {
        if let Some(r) = parse_radix(&s[2..], 16) {
            return Some(r);
        }
        // "0x" with no hex digit: C parses the "0" and stops at 'x'.
        return Some((0, &s[1..]));
    }
    if s.first() == Some(&b'0') {
        return parse_radix(s, 8).or(Some((0, &s[1..])));
    }
    parse_radix(s, 10)
}

/// Linux `memparse`: a number (any base, as [`parse_auto`]) optionally
/// followed by one of K, M, G, T, P, E (binary multiples, either case).
pub fn memparse(s: &[u8]) -> Option<(u64, &[u8])> {
    let (mut v, mut rest) = parse_auto(s)?;
    let shift = match rest.first() {
        Some(b'K' | b'k') => 10,
        Some(b'M' | b'm') => 20,
        Some(b'G' | b'g') => 30,
        Some(b'T' | b't') => 40,
        Some(b'P' | b'p') => 50,
        Some(b'E' | b'e') => 60,
        _ => 0,
    };
    if shift != 0 {
        v = v.checked_mul(1u64 << shift)?;
        rest = &rest[1..];
    }
    Some((v, rest))
}

/// A whole string as a number: decimal, or hex with a `0x` prefix.
/// Used for shell arguments.
pub fn parse_number(s: &[u8]) -> Option<u64> {
    let (v, rest) = if s.len() > 2 && (s.starts_with(b"0x") || s.starts_with(b"0X")) {
        parse_radix(&s[2..], 16)?
    } else {
        parse_radix(s, 10)?
    };
    if rest.is_empty() {
        Some(v)
    } else {
        None
    }
}

/// Buffer size that holds any formatted u64 (with a `0x` prefix).
pub const NUM_BUF: usize = 20;

/// Formats `v` in decimal at the end of `buf`; returns the digits.
pub fn fmt_dec(v: u64, buf: &mut [u8; NUM_BUF]) -> &[u8] {
    let mut i = NUM_BUF;
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Formats `v` as lowercase hex with a `0x` prefix and at least `min_digits`
/// digits (at most 16).
pub fn fmt_hex(v: u64, min_digits: usize, buf: &mut [u8; NUM_BUF]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = NUM_BUF;
    let mut v = v;
    let mut n = 0;
    while v != 0 || n < min_digits.clamp(1, 16) {
        i -= 1;
        buf[i] = HEX[(v & 0xf) as usize];
        v >>= 4;
        n += 1;
    }
    i -= 2;
    buf[i] = b'0';
    buf[i + 1] = b'x';
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_base() {
        assert_eq!(parse_auto(b"123@"), Some((123, &b"@"[..])));
        assert_eq!(parse_auto(b"0x1fE:"), Some((0x1fe, &b":"[..])));
        assert_eq!(parse_auto(b"017"), Some((0o17, &b""[..])));
        assert_eq!(parse_auto(b"0"), Some((0, &b""[..])));
        assert_eq!(parse_auto(b"08"), Some((0, &b"8"[..])));
        assert_eq!(parse_auto(b"0xg"), Some((0, &b"xg"[..])));
        assert_eq!(parse_auto(b"x"), None);
        assert_eq!(parse_auto(b"99999999999999999999999"), None);
    }

    #[test]
    fn memparse_suffixes() {
        assert_eq!(memparse(b"512"), Some((512, &b""[..])));
        assert_eq!(memparse(b"4K@"), Some((4096, &b"@"[..])));
        assert_eq!(memparse(b"1k"), Some((1024, &b""[..])));
        assert_eq!(memparse(b"2M"), Some((2 << 20, &b""[..])));
        assert_eq!(memparse(b"0x10G"), Some((16 << 30, &b""[..])));
        assert_eq!(memparse(b"1T"), Some((1 << 40, &b""[..])));
        assert_eq!(memparse(b"3X"), Some((3, &b"X"[..])));
        assert_eq!(memparse(b"100E"), None);
    }

    #[test]
    fn shell_numbers() {
        assert_eq!(parse_number(b"64"), Some(64));
        assert_eq!(parse_number(b"0x40"), Some(64));
        assert_eq!(parse_number(b"0x"), None);
        assert_eq!(parse_number(b"12a"), None);
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_number(b"18446744073709551616"), None);
    }

    #[test]
    fn formatting() {
        let mut b = [0; NUM_BUF];
        assert_eq!(fmt_dec(0, &mut b), b"0");
        assert_eq!(fmt_dec(1234567890, &mut b), b"1234567890");
        assert_eq!(fmt_dec(u64::MAX, &mut b), b"18446744073709551615");
        assert_eq!(fmt_hex(0, 1, &mut b), b"0x0");
        assert_eq!(fmt_hex(0xfee0_0000, 1, &mut b), b"0xfee00000");
        assert_eq!(fmt_hex(0x1f, 4, &mut b), b"0x001f");
        assert_eq!(fmt_hex(u64::MAX, 16, &mut b), b"0xffffffffffffffff");
        assert_eq!(fmt_hex(5, 99, &mut b), b"0x0000000000000005");
    }
}
