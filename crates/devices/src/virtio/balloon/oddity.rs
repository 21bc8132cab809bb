//! What a driver can get wrong in balloon requests, and logging each kind once: the first
//! occurrence of a kind after the device starts is a warning, later ones go to the debug log,
//! so a hostile or buggy guest cannot flood the log. Nothing here changes what is done: the
//! callers have already ignored whatever was wrong.

/// Something in a request that the device ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Oddity {
    /// A page frame (or part of a reported range) outside guest RAM: in the MMIO hole, past
    /// the end of memory.
    OutsideRam,
    /// A page frame given twice in a request, or already in the balloon.
    Repeated,
    /// A page frame to deflate that is not in the balloon.
    NotInBalloon,
    /// An inflate or deflate request with more page frames than any driver sends.
    TooManyPages,
    /// A buffer of the wrong direction (device-writable where the driver should write, or
    /// the other way round).
    WrongDirection,
    /// A buffer whose length is not a whole number of entries (4-byte page frames, 10-byte
    /// statistics).
    PartialEntry,
    /// A buffer the device cannot read (outside guest memory).
    UnreadableBuffer,
    /// A reported free range that does not start and end on 4 KiB page boundaries.
    UnalignedRange,
    /// A statistics buffer longer than any driver sends.
    StatsTooLong,
    /// A second statistics buffer while the device still held one.
    ExtraStatsBuffer,
    /// The host refused to release pages (madvise failed).
    ReleaseFailed,
}

impl Oddity {
    fn describe(self) -> &'static str {
        match self {
            Oddity::OutsideRam => "page frames outside guest RAM",
            Oddity::Repeated => "page frames repeated or already in the balloon",
            Oddity::NotInBalloon => "page frames to deflate that are not in the balloon",
            Oddity::TooManyPages => "a request with more page frames than a driver sends",
            Oddity::WrongDirection => "buffers of the wrong direction",
            Oddity::PartialEntry => "buffers that end in the middle of an entry",
            Oddity::UnreadableBuffer => "buffers outside guest memory",
            Oddity::UnalignedRange => "free page ranges not on 4 KiB boundaries",
            Oddity::StatsTooLong => "a statistics buffer longer than a driver sends",
            Oddity::ExtraStatsBuffer => "a second statistics buffer",
            Oddity::ReleaseFailed => "pages the host could not release",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// The kinds seen since the device started.
#[derive(Debug, Default)]
pub struct Oddities {
    seen: u32,
}

impl Oddities {
    /// Records `count` occurrences of `kind` (none: nothing to say).
    pub fn note(&mut self, kind: Oddity, count: u64) {
        if count == 0 {
            return;
        }
        if self.seen & kind.bit() == 0 {
            self.seen |= kind.bit();
            log::warn!(
                "virtio-balloon: the driver sent {} ({count}); ignored (further ones are logged at debug level)",
                kind.describe()
            );
        } else {
            log::debug!(
                "virtio-balloon: the driver sent {} ({count}); ignored",
                kind.describe()
            );
        }
    }

    /// Whether `kind` was noted since the last [`Oddities::clear`].
    #[cfg(test)]
    pub fn seen(&self, kind: Oddity) -> bool {
        self.seen & kind.bit() != 0
    }

    /// A new start of the device: every kind is worth a warning again.
    pub fn clear(&mut self) {
        self.seen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_remembered_until_cleared() {
        let mut o = Oddities::default();
        o.note(Oddity::Repeated, 0);
        assert!(!o.seen(Oddity::Repeated), "nothing happened");
        o.note(Oddity::Repeated, 3);
        o.note(Oddity::ReleaseFailed, 1);
        assert!(o.seen(Oddity::Repeated));
        assert!(o.seen(Oddity::ReleaseFailed));
        assert!(!o.seen(Oddity::OutsideRam));
        o.clear();
        assert!(!o.seen(Oddity::Repeated));
    }
}
