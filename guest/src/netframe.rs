//! The test frames of the virtio-net driver: Ethernet frames of the local experimental
//! EtherType 0x88b5 whose payload is a sequence number and a pattern anyone can recompute.
//!
//! ```text
//! 0      6      12        14          18
//! | dst  | src  | 0x88b5  | seq (LE)  | data: byte j = (seed + seq + j) mod 256 ...
//! ```
//!
//! `tests/e2e/test_net.py` has the same in Python (`test_frame`). Building and checking work a
//! word at a time (the kernel runs emulated, about 3 million instructions a second).

/// EtherType of test frames (IEEE 802 local experimental 1).
pub const ETHERTYPE: u16 = 0x88b5;
/// Ethernet header: destination, source, EtherType.
pub const ETH_HDR: usize = 14;
/// Where the data starts (after the sequence number).
pub const DATA: usize = ETH_HDR + 4;
/// Shortest frame (Ethernet's minimum without the FCS).
pub const MIN_FRAME: usize = 60;
/// Longest frame (a 1500-byte MTU).
pub const MAX_FRAME: usize = 1514;
/// The broadcast address.
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Bytewise add of `k` to each byte of `w` (no carries between bytes).
const fn add_bytes(w: u64, k: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    ((w & !HIGH) + (k & !HIGH)) ^ ((w ^ k) & HIGH)
}

/// The data word at byte offset `j` (a multiple of 8): bytes `first + j .. first + j + 8`.
fn word_at(first: u8, j: usize) -> u64 {
    let b = first.wrapping_add(j as u8) as u64;
    let base = b * 0x0101_0101_0101_0101;
    add_bytes(base, 0x0706_0504_0302_0100)
}

/// Fills `frame` (its whole length) as test frame `seq` of `seed`.
pub fn fill(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], seed: u8, seq: u32) {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    frame[14..18].copy_from_slice(&seq.to_le_bytes());
    fill_data(&mut frame[DATA..], first_byte(seed, seq));
}

/// The first data byte of frame `seq` of `seed`.
pub fn first_byte(seed: u8, seq: u32) -> u8 {
    seed.wrapping_add(seq as u8)
}

fn fill_data(data: &mut [u8], first: u8) {
    let mut chunks = data.chunks_exact_mut(8);
    let mut w = word_at(first, 0);
    for c in &mut chunks {
        c.copy_from_slice(&w.to_le_bytes());
        w = add_bytes(w, 0x0808_0808_0808_0808);
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b = (w >> (8 * i)) as u8;
    }
}

/// Changes a filled frame into frame `seq` of the same seed, length and addresses.
pub fn renumber(frame: &mut [u8], seed: u8, seq: u32) {
    frame[14..18].copy_from_slice(&seq.to_le_bytes());
    fill_data(&mut frame[DATA..], first_byte(seed, seq));
}

/// What is wrong with a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than the sequence number.
    Short,
    /// Another EtherType (not a test frame).
    Other,
    /// A test frame whose data differs at this byte.
    Data(usize),
}

/// The EtherType of `frame` and, for a test frame, its sequence number.
pub fn seq_of(frame: &[u8]) -> Result<u32, FrameError> {
    if frame.len() < ETH_HDR {
        return Err(FrameError::Short);
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE {
        return Err(FrameError::Other);
    }
    if frame.len() < DATA {
        return Err(FrameError::Short);
    }
    Ok(u32::from_le_bytes([
        frame[14], frame[15], frame[16], frame[17],
    ]))
}

/// Checks a received test frame of `seed`; returns its sequence number.
pub fn check(frame: &[u8], seed: u8) -> Result<u32, FrameError> {
    let seq = seq_of(frame)?;
    let data = &frame[DATA..];
    let first = first_byte(seed, seq);
    let mut w = word_at(first, 0);
    let mut chunks = data.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let got = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        if got != w {
            let diff = (got ^ w).trailing_zeros() as usize / 8;
            return Err(FrameError::Data(DATA + at + diff));
        }
        w = add_bytes(w, 0x0808_0808_0808_0808);
        at += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b != (w >> (8 * i)) as u8 {
            return Err(FrameError::Data(DATA + at + i));
        }
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytewise(seed: u8, seq: u32, len: usize) -> Vec<u8> {
        (0..len - DATA)
            .map(|j| (u32::from(seed) + seq + j as u32) as u8)
            .collect()
    }

    #[test]
    fn the_pattern_is_the_documented_one() {
        for (seed, seq, len) in [
            (0u8, 0u32, 60usize),
            (7, 1, 61),
            (250, 300, 1514),
            (255, 9, 67),
        ] {
            let mut f = vec![0u8; len];
            fill(&mut f, BROADCAST, [2, 0, 0, 0, 0, 1], seed, seq);
            assert_eq!(&f[12..14], &[0x88, 0xb5]);
            assert_eq!(
                &f[DATA..],
                &bytewise(seed, seq, len)[..],
                "{seed} {seq} {len}"
            );
            assert_eq!(check(&f, seed), Ok(seq));
            renumber(&mut f, seed, seq + 1);
            assert_eq!(&f[DATA..], &bytewise(seed, seq + 1, len)[..]);
        }
    }

    #[test]
    fn checking_finds_the_bad_byte_and_other_frames() {
        let mut f = vec![0u8; 100];
        fill(&mut f, BROADCAST, [2; 6], 3, 5);
        f[50] ^= 1;
        assert_eq!(check(&f, 3), Err(FrameError::Data(50)));
        f[50] ^= 1;
        f[99] ^= 0x80;
        assert_eq!(check(&f, 3), Err(FrameError::Data(99)));
        assert_eq!(check(&f[..10], 3), Err(FrameError::Short));
        f[12] = 8;
        assert_eq!(check(&f, 3), Err(FrameError::Other));
    }
}
