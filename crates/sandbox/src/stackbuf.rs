//! Formatting without allocating, for signal handlers.

/// A fixed-size byte buffer; what does not fit is dropped.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    pub(crate) const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Self {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self
    }

    pub(crate) fn push_str(&mut self, s: &str) -> &mut Self {
        self.push(s.as_bytes())
    }

    /// `v` in decimal, zero-padded to at least `width` digits.
    pub(crate) fn push_num(&mut self, v: u64, width: usize) -> &mut Self {
        self.push_radix(v, 10, width)
    }

    /// `v`'s digits in `radix` (10 or 16, lower case), zero-padded to at least `width`.
    fn push_radix(&mut self, v: u64, radix: u64, width: usize) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = v;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[(v % radix) as usize];
            v /= radix;
            if v == 0 {
                break;
            }
        }
        for _ in (digits.len() - i)..width {
            self.push(b"0");
        }
        self.push(&digits[i..])
    }

    /// `v` in decimal with a sign.
    pub(crate) fn push_signed(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.push(b"-");
        }
        self.push_num(v.unsigned_abs(), 0)
    }

    /// `v` in hex with `0x`, as the log prints addresses.
    pub(crate) fn push_hex(&mut self, v: u64) -> &mut Self {
        self.push(b"0x").push_radix(v, 16, 0)
    }

    /// The logger's timestamp (`2026-11-21T20:31:05.123456Z`) for `secs`.`micros` since 1970.
    pub(crate) fn push_timestamp(&mut self, secs: i64, micros: u32) -> &mut Self {
        let (y, mo, d) = crate::logger::civil(secs.div_euclid(86_400));
        let s = secs.rem_euclid(86_400) as u64;
        self.push_num(y.max(0) as u64, 4)
            .push(b"-")
            .push_num(mo.into(), 2)
            .push(b"-")
            .push_num(d.into(), 2)
            .push(b"T")
            .push_num(s / 3600, 2)
            .push(b":")
            .push_num((s / 60) % 60, 2)
            .push(b":")
            .push_num(s % 60, 2)
            .push(b".")
            .push_num(micros.into(), 6)
            .push(b"Z")
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_padding_and_overflow() {
        let mut b = StackBuf::<32>::new();
        b.push_num(0, 0).push(b" ").push_num(7, 3).push(b" ");
        b.push_signed(-42).push(b" ").push_num(u64::MAX, 0);
        assert_eq!(b.as_bytes(), b"0 007 -42 18446744073709551615");
        let mut small = StackBuf::<4>::new();
        small.push_str("abcdef");
        assert_eq!(small.as_bytes(), b"abcd");
        let mut hex = StackBuf::<64>::new();
        hex.push_hex(0)
            .push(b" ")
            .push_hex(0xdead_beef)
            .push(b" ")
            .push_hex(u64::MAX);
        assert_eq!(hex.as_bytes(), b"0x0 0xdeadbeef 0xffffffffffffffff");
    }

    #[test]
    fn timestamp_matches_the_logger() {
        let mut b = StackBuf::<64>::new();
        b.push_timestamp(1_583_908_726, 162_739);
        let want = crate::logger::format_timestamp(std::time::Duration::from_micros(
            1_583_908_726_162_739,
        ));
        assert_eq!(b.as_bytes(), want.as_bytes());
    }
}
