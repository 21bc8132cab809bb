//! The console's output buffer: a ring of [`super::BUFFER_SIZE`] bytes between the guest's
//! transmit queue and the client.
//!
//! While a client is connected it is a bounded queue: when it is full the device stops taking
//! the guest's buffers until the client reads, so nothing is lost and the VMM never holds more.
//! While nobody is connected the oldest bytes make room for new ones, so the guest never waits
//! and the next client gets the last output (the boot messages, typically).

/// A fixed-size byte ring.
pub struct OutputBuffer {
    buf: Box<[u8]>,
    /// Index of the oldest byte.
    start: usize,
    len: usize,
    /// Bytes dropped to make room since the last [`take_dropped`](Self::take_dropped).
    dropped: u64,
}

impl OutputBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity].into_boxed_slice(),
            start: 0,
            len: 0,
            dropped: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// The oldest bytes, as one contiguous slice (all of them unless they wrap).
    pub fn front(&self) -> &[u8] {
        let end = (self.start + self.len).min(self.buf.len());
        &self.buf[self.start..end]
    }

    /// Forgets the `n` oldest bytes (they were sent).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.start = (self.start + n) % self.buf.len().max(1);
        self.len -= n;
        if self.len == 0 {
            self.start = 0;
        }
    }

    /// Drops the oldest bytes until `n` bytes (at most the capacity) are free.
    pub fn make_room(&mut self, n: usize) {
        let free = self.buf.len() - self.len;
        if n > free {
            let drop = (n - free).min(self.len);
            self.consume(drop);
            self.dropped += drop as u64;
        }
    }

    /// Counts `n` bytes that never entered the buffer as dropped (skipped while nobody was
    /// connected because newer output would have pushed them out anyway).
    pub fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
    }

    /// The bytes dropped since the last call, and resets the count.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// The free space after the newest byte, as one contiguous slice; [`commit`](Self::commit)
    /// the bytes written into it.
    pub fn spare(&mut self) -> &mut [u8] {
        let cap = self.buf.len();
        if self.len == cap {
            return &mut [];
        }
        let tail = (self.start + self.len) % cap;
        let end = if tail >= self.start { cap } else { self.start };
        &mut self.buf[tail..end]
    }

    /// Adds the first `n` bytes of [`spare`](Self::spare) to the buffer.
    pub fn commit(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }

    /// Appends `data`, dropping the oldest bytes to make room (only the newest capacity's worth
    /// of `data` is kept if it is longer).
    pub fn push_overwriting(&mut self, mut data: &[u8]) {
        let cap = self.buf.len();
        if data.len() > cap {
            self.dropped += (data.len() - cap) as u64;
            data = &data[data.len() - cap..];
        }
        self.make_room(data.len());
        while !data.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(data.len());
            spare[..n].copy_from_slice(&data[..n]);
            self.commit(n);
            data = &data[n..];
        }
    }

    /// Everything buffered, oldest first.
    pub fn to_vec(&self) -> Vec<u8> {
        let cap = self.buf.len();
        (0..self.len)
            .map(|i| self.buf[(self.start + i) % cap])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(b: &mut OutputBuffer) -> Vec<u8> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let f = b.front().to_vec();
            out.extend_from_slice(&f);
            b.consume(f.len());
        }
        out
    }

    #[test]
    fn fills_wraps_and_drains_in_order() {
        let mut b = OutputBuffer::new(8);
        assert_eq!(b.spare().len(), 8);
        b.spare()[..5].copy_from_slice(b"hello");
        b.commit(5);
        b.consume(3);
        assert_eq!(b.front(), b"lo");
        // Free space wraps: 3 bytes at the end, then 3 at the start.
        assert_eq!(b.spare().len(), 3);
        b.push_overwriting(b"world!");
        assert!(b.is_full());
        assert_eq!(b.spare().len(), 0);
        assert_eq!(b.to_vec(), b"loworld!");
        assert_eq!(b.take_dropped(), 0);
        assert_eq!(drain(&mut b), b"loworld!");
        assert_eq!(b.front(), b"");
    }

    #[test]
    fn overwriting_keeps_the_newest_bytes_and_counts_the_rest() {
        let mut b = OutputBuffer::new(4);
        b.push_overwriting(b"abc");
        b.push_overwriting(b"de");
        assert_eq!(b.to_vec(), b"bcde");
        assert_eq!(b.take_dropped(), 1);
        b.push_overwriting(b"0123456789");
        assert_eq!(b.to_vec(), b"6789");
        assert_eq!(b.take_dropped(), 10);
        b.make_room(2);
        assert_eq!(b.to_vec(), b"89");
        b.make_room(100);
        assert!(b.is_empty());
        b.count_dropped(5);
        assert_eq!(b.take_dropped(), 9);
        assert_eq!(b.take_dropped(), 0);
    }
}
