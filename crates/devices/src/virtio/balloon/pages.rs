//! The page-release backend: guest RAM as the balloon sees it (4 KiB page frames in each RAM
//! region), which frames are in the balloon, and giving pages back to the host.
//!
//! Guest RAM is anonymous private memory (`machine::memory`): `MADV_DONTNEED` frees a page at
//! once (the VMM's RSS drops) and the guest reads zeros there the next time it touches it,
//! which is what a deflated page must read. Only frames inside a RAM region are ever passed to
//! `madvise`: anything else a driver names (the MMIO hole, past the end, a frame already in the
//! balloon, the same frame twice) is counted in [`Outcome`] and left alone.

use super::config::{PAGE_SHIFT, PAGE_SIZE};
use serde::{Deserialize, Serialize};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// What one request did, in 4 KiB pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Pages given back to the host (inflated, or reported free).
    pub released: u64,
    /// Pages the guest took back (deflated).
    pub returned: u64,
    /// Frames outside guest RAM.
    pub outside: u64,
    /// Frames named twice in the request, or inflated while already in the balloon.
    pub repeated: u64,
    /// Frames deflated that were not in the balloon.
    pub not_in_balloon: u64,
    /// Reported ranges that do not start and end on page boundaries (their whole pages are
    /// still released).
    pub unaligned: u64,
    /// Pages `madvise` refused to release (they stay in the balloon's count).
    pub failed: u64,
}

/// A run of page frames: (first frame, count).
pub type FrameRun = (u64, u64);

/// One RAM region: its frames and which of them are in the balloon.
struct Region {
    first_frame: u64,
    frames: u64,
    /// Host address of the region's first byte.
    host: usize,
    /// Bit `i` set: frame `first_frame + i` is in the balloon.
    bits: Vec<u64>,
}

impl Region {
    fn test_and_set(&mut self, i: u64) -> bool {
        let (word, mask) = ((i / 64) as usize, 1u64 << (i % 64));
        let was = self.bits[word] & mask != 0;
        self.bits[word] |= mask;
        was
    }

    fn test_and_clear(&mut self, i: u64) -> bool {
        let (word, mask) = ((i / 64) as usize, 1u64 << (i % 64));
        let was = self.bits[word] & mask != 0;
        self.bits[word] &= !mask;
        was
    }

    fn is_set(&self, i: u64) -> bool {
        self.bits[(i / 64) as usize] & (1u64 << (i % 64)) != 0
    }
}

/// Guest RAM and the balloon's pages in it.
pub struct GuestPages {
    /// Keeps the mappings the host addresses point into alive.
    _mem: GuestMemoryMmap,
    regions: Vec<Region>,
    in_balloon: u64,
}

impl GuestPages {
    /// The frames of every region of `mem` (anonymous guest RAM); none in the balloon.
    pub fn new(mem: &GuestMemoryMmap) -> Self {
        let regions = mem
            .iter()
            .map(|r| {
                let frames = r.len() >> PAGE_SHIFT;
                Region {
                    first_frame: r.start_addr().0 >> PAGE_SHIFT,
                    frames,
                    host: r.as_ptr() as usize,
                    bits: vec![0; frames.div_ceil(64) as usize],
                }
            })
            .collect();
        GuestPages {
            _mem: mem.clone(),
            regions,
            in_balloon: 0,
        }
    }

    /// Frames of guest RAM.
    pub fn total(&self) -> u64 {
        self.regions.iter().map(|r| r.frames).sum()
    }

    /// Frames in the balloon now.
    pub fn in_balloon(&self) -> u64 {
        self.in_balloon
    }

    /// The region holding `frame` and the frame's index in it.
    fn locate(&self, frame: u64) -> Option<(usize, u64)> {
        self.regions.iter().enumerate().find_map(|(ri, r)| {
            frame
                .checked_sub(r.first_frame)
                .filter(|&i| i < r.frames)
                .map(|i| (ri, i))
        })
    }

    /// Releases `count` frames from index `first` of region `ri` to the host.
    fn discard(&self, ri: usize, first: u64, count: u64, out: &mut Outcome) {
        let r = &self.regions[ri];
        debug_assert!(first + count <= r.frames);
        let addr = r.host + (first << PAGE_SHIFT) as usize;
        let len = (count << PAGE_SHIFT) as usize;
        // SAFETY: [addr, addr + len) lies inside region `ri`'s mapping (its frames were checked
        // against the region's length), which `_mem` keeps mapped. MADV_DONTNEED on this
        // private anonymous memory only drops its pages (later accesses read zeros); the VMM
        // holds no references into guest memory, which it reaches through vm-memory's
        // volatile accesses only.
        let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        if rc == 0 {
            out.released += count;
        } else {
            log::error!(
                "virtio-balloon: madvise(MADV_DONTNEED) of {len} bytes of guest RAM failed: {}",
                std::io::Error::last_os_error()
            );
            out.failed += count;
        }
    }

    /// The driver gives up `frames` (an inflate request): each new frame of guest RAM goes
    /// into the balloon and back to the host, contiguous frames in one call. Sorts `frames`.
    pub fn inflate(&mut self, frames: &mut [u32]) -> Outcome {
        frames.sort_unstable();
        let mut out = Outcome::default();
        let mut run: Option<(usize, u64, u64)> = None;
        let mut prev = None;
        for &f in frames.iter() {
            if prev.replace(f) == Some(f) {
                out.repeated += 1;
                continue;
            }
            let Some((ri, i)) = self.locate(u64::from(f)) else {
                out.outside += 1;
                continue;
            };
            if self.regions[ri].test_and_set(i) {
                out.repeated += 1;
                continue;
            }
            self.in_balloon += 1;
            run = match run {
                Some((r, first, n)) if r == ri && first + n == i => Some((r, first, n + 1)),
                other => {
                    if let Some((r, first, n)) = other {
                        self.discard(r, first, n, &mut out);
                    }
                    Some((ri, i, 1))
                }
            };
        }
        if let Some((r, first, n)) = run {
            self.discard(r, first, n, &mut out);
        }
        out
    }

    /// The driver takes back `frames` (a deflate request): they leave the balloon. Nothing is
    /// done to the memory: a released page reads as zero once the guest touches it. Sorts
    /// `frames`.
    pub fn deflate(&mut self, frames: &mut [u32]) -> Outcome {
        frames.sort_unstable();
        let mut out = Outcome::default();
        let mut prev = None;
        for &f in frames.iter() {
            if prev.replace(f) == Some(f) {
                out.repeated += 1;
                continue;
            }
            match self.locate(u64::from(f)) {
                None => out.outside += 1,
                Some((ri, i)) if self.regions[ri].test_and_clear(i) => {
                    self.in_balloon -= 1;
                    out.returned += 1;
                }
                Some(_) => out.not_in_balloon += 1,
            }
        }
        out
    }

    /// The driver reports `[addr, addr + len)` free (free page reporting): its whole pages
    /// inside guest RAM go back to the host. They stay the guest's: it may use them again at
    /// any time without telling, and reads zeros there.
    pub fn release_free(&mut self, addr: u64, len: u64) -> Outcome {
        let mut out = Outcome::default();
        let Some(end) = addr.checked_add(len) else {
            out.outside += len.div_ceil(PAGE_SIZE);
            return out;
        };
        if !addr.is_multiple_of(PAGE_SIZE) || !end.is_multiple_of(PAGE_SIZE) {
            out.unaligned += 1;
        }
        let first = addr.div_ceil(PAGE_SIZE);
        let last = end / PAGE_SIZE; // exclusive
        if first >= last {
            return out;
        }
        let mut inside = 0;
        for ri in 0..self.regions.len() {
            let r = &self.regions[ri];
            let lo = first.max(r.first_frame);
            let hi = last.min(r.first_frame + r.frames);
            if lo < hi {
                inside += hi - lo;
                self.discard(ri, lo - r.first_frame, hi - lo, &mut out);
            }
        }
        out.outside += (last - first) - inside;
        out
    }

    /// Device reset: the driver starts over with an empty balloon and uses every page again.
    pub fn clear(&mut self) {
        for r in &mut self.regions {
            r.bits.fill(0);
        }
        self.in_balloon = 0;
    }

    /// The frames in the balloon, as runs.
    pub fn runs(&self) -> Vec<FrameRun> {
        let mut runs = Vec::new();
        for r in &self.regions {
            let mut i = 0;
            while i < r.frames {
                if r.bits[(i / 64) as usize] == 0 {
                    i = (i / 64 + 1) * 64;
                    continue;
                }
                if !r.is_set(i) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < r.frames && r.is_set(i) {
                    i += 1;
                }
                runs.push((r.first_frame + start, i - start));
            }
        }
        runs
    }

    /// Marks `runs` as in the balloon without touching memory (a restored device: the pages
    /// are not in its memory). Frames outside guest RAM are refused.
    pub fn mark(&mut self, runs: &[FrameRun]) -> Result<(), String> {
        for &(first, count) in runs {
            for f in first..first.saturating_add(count) {
                let (ri, i) = self
                    .locate(f)
                    .ok_or_else(|| format!("page frame 0x{f:x} is not in guest RAM"))?;
                if !self.regions[ri].test_and_set(i) {
                    self.in_balloon += 1;
                }
            }
        }
        Ok(())
    }
}

/// A saved balloon's pages, for the state file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagesState {
    pub runs: Vec<FrameRun>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestAddress};

    const MIB: u64 = 1 << 20;

    /// 4 MiB at 0 and 4 MiB at 16 MiB: a hole in between, as the MMIO hole is for a big guest.
    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), (4 * MIB) as usize),
            (GuestAddress(16 * MIB), (4 * MIB) as usize),
        ])
        .unwrap()
    }

    fn frame(addr: u64) -> u32 {
        (addr >> PAGE_SHIFT) as u32
    }

    fn fill(m: &GuestMemoryMmap, addr: u64, pages: u64) {
        for p in 0..pages {
            m.write_obj(0xdead_beef_u64 ^ p, GuestAddress(addr + p * PAGE_SIZE))
                .unwrap();
        }
    }

    fn word(m: &GuestMemoryMmap, addr: u64) -> u64 {
        m.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn inflated_pages_are_released_and_read_as_zero_after_deflate() {
        let m = mem();
        let mut p = GuestPages::new(&m);
        assert_eq!(p.total(), 2048);
        fill(&m, MIB, 8);
        fill(&m, 16 * MIB, 2);
        let mut frames: Vec<u32> = (0..8)
            .map(|i| frame(MIB + i * PAGE_SIZE))
            .chain([frame(16 * MIB)])
            .rev()
            .collect();
        let out = p.inflate(&mut frames);
        assert_eq!(out.released, 9);
        assert_eq!(p.in_balloon(), 9);
        assert_eq!(p.runs(), vec![(256, 8), (4096, 1)]);
        let out = p.deflate(&mut [frame(MIB), frame(16 * MIB)]);
        assert_eq!(out.returned, 2);
        assert_eq!(p.in_balloon(), 7);
        assert_eq!(word(&m, MIB), 0, "deflated pages read as zero");
        assert_eq!(word(&m, 16 * MIB), 0);
        assert_eq!(
            word(&m, 16 * MIB + PAGE_SIZE),
            0xdead_beef ^ 1,
            "pages not inflated keep their data"
        );
    }

    #[test]
    fn frames_outside_ram_repeated_or_absent_never_reach_madvise() {
        let m = mem();
        let mut p = GuestPages::new(&m);
        // Data in a page that a bogus frame number could alias if it were truncated.
        fill(&m, 0, 1);
        let hole = frame(8 * MIB);
        let past_end = frame(20 * MIB);
        let mut frames = vec![hole, past_end, u32::MAX, frame(MIB), frame(MIB)];
        let out = p.inflate(&mut frames);
        assert_eq!(out.outside, 3);
        assert_eq!(out.repeated, 1);
        assert_eq!(out.released, 1);
        let out = p.inflate(&mut [frame(MIB)]);
        assert_eq!((out.repeated, out.released), (1, 0), "already in");
        let out = p.deflate(&mut [frame(2 * MIB), hole, frame(MIB), frame(MIB)]);
        assert_eq!(
            (out.not_in_balloon, out.outside, out.repeated, out.returned),
            (1, 1, 1, 1)
        );
        assert_eq!(p.in_balloon(), 0);
        assert_eq!(word(&m, 0), 0xdead_beef, "page 0 untouched");
    }

    #[test]
    fn reported_ranges_release_whole_pages_inside_ram_only() {
        let m = mem();
        let mut p = GuestPages::new(&m);
        fill(&m, 3 * MIB, 256);
        fill(&m, 16 * MIB, 1);
        // 3 MiB .. 4 MiB + 4 KiB: the last page is in the hole.
        let out = p.release_free(3 * MIB, MIB + PAGE_SIZE);
        assert_eq!((out.released, out.outside), (256, 1));
        assert_eq!(word(&m, 3 * MIB + 100 * PAGE_SIZE), 0);
        // Not page-aligned: only the whole pages inside.
        fill(&m, 3 * MIB, 3);
        let out = p.release_free(3 * MIB + 8, 2 * PAGE_SIZE);
        assert_eq!((out.released, out.unaligned), (1, 1));
        assert_eq!(word(&m, 3 * MIB), 0xdead_beef, "first partial page kept");
        assert_eq!(word(&m, 3 * MIB + PAGE_SIZE), 0);
        assert_eq!(word(&m, 3 * MIB + 2 * PAGE_SIZE), 0xdead_beef ^ 2);
        // Spanning the hole into the second region.
        let out = p.release_free(4 * MIB - PAGE_SIZE, 12 * MIB + 2 * PAGE_SIZE);
        assert_eq!(
            out.released, 2,
            "the last page below the hole, the first above"
        );
        assert_eq!(out.outside, 12 * 256);
        assert_eq!(word(&m, 16 * MIB), 0);
        // Wrapping and empty ranges.
        assert_eq!(p.release_free(u64::MAX - 10, 100).released, 0);
        assert_eq!(p.release_free(MIB, 0), Outcome::default());
        assert_eq!(p.release_free(MIB + 1, 10).released, 0);
        assert_eq!(p.in_balloon(), 0, "reported pages are not in the balloon");
    }

    #[test]
    fn runs_round_trip_and_clear() {
        let m = mem();
        let mut p = GuestPages::new(&m);
        let mut frames: Vec<u32> = [0u64, 1, 2, 63, 64, 65, 200, 1023]
            .iter()
            .map(|&i| i as u32)
            .chain([frame(16 * MIB) + 5])
            .collect();
        p.inflate(&mut frames);
        let runs = p.runs();
        assert_eq!(
            runs,
            vec![(0, 3), (63, 3), (200, 1), (1023, 1), (4096 + 5, 1)]
        );
        let mut q = GuestPages::new(&m);
        q.mark(&runs).unwrap();
        assert_eq!(q.runs(), runs);
        assert_eq!(q.in_balloon(), 9);
        assert!(q.mark(&[(frame(8 * MIB) as u64, 1)]).is_err());
        q.clear();
        assert_eq!(q.in_balloon(), 0);
        assert!(q.runs().is_empty());
    }

    mod props {
        //! For any sequence of inflates, deflates and free page reports a driver can send: no
        //! panic, the balloon's count is the model's, and only pages a request named inside guest
        //! RAM lose their data.

        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        /// 64 pages at 0 and 64 at 1 MiB: a hole between, nothing above.
        fn small() -> GuestMemoryMmap {
            GuestMemoryMmap::from_ranges(&[
                (GuestAddress(0), 64 * PAGE_SIZE as usize),
                (GuestAddress(MIB), 64 * PAGE_SIZE as usize),
            ])
            .unwrap()
        }

        fn frames_in_ram() -> Vec<u64> {
            (0..64).chain(256..320).collect()
        }

        /// Frames near the regions, in the hole, past the end, and anything.
        fn frame() -> impl Strategy<Value = u32> {
            prop_oneof![
                4 => 0u32..400,
                1 => prop::sample::select(&[63u32, 64, 255, 256, 319, 320, u32::MAX][..]),
                1 => any::<u32>(),
            ]
        }

        #[derive(Clone, Debug)]
        enum Op {
            Inflate(Vec<u32>),
            Deflate(Vec<u32>),
            Report(u64, u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => prop::collection::vec(frame(), 0..40).prop_map(Op::Inflate),
                2 => prop::collection::vec(frame(), 0..40).prop_map(Op::Deflate),
                1 => (prop_oneof![0u64..0x14_2000, any::<u64>()], prop_oneof![0u64..0x4_0000, any::<u64>()])
                    .prop_map(|(a, l)| Op::Report(a, l)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

            #[test]
            fn only_named_pages_in_ram_are_released(ops in prop::collection::vec(op(), 1..12)) {
                let m = small();
                for f in frames_in_ram() {
                    m.write_obj(f | 1 << 40, GuestAddress(f * PAGE_SIZE)).unwrap();
                }
                let mut p = GuestPages::new(&m);
                let ram: BTreeSet<u64> = frames_in_ram().into_iter().collect();
                let mut model = BTreeSet::new();
                let mut released = BTreeSet::new();
                for op in &ops {
                    match op {
                        Op::Inflate(f) => {
                            let out = p.inflate(&mut f.clone());
                            let new: BTreeSet<u64> = f
                                .iter()
                                .map(|&x| u64::from(x))
                                .filter(|x| ram.contains(x) && !model.contains(x))
                                .collect();
                            prop_assert_eq!(out.released, new.len() as u64);
                            released.extend(new.iter().copied());
                            model.extend(new);
                        }
                        Op::Deflate(f) => {
                            p.deflate(&mut f.clone());
                            for x in f {
                                model.remove(&u64::from(*x));
                            }
                        }
                        Op::Report(a, l) => {
                            p.release_free(*a, *l);
                            if let Some(end) = a.checked_add(*l) {
                                let first = a.div_ceil(PAGE_SIZE);
                                released.extend(ram.iter().copied().filter(|&f| f >= first && f < end / PAGE_SIZE));
                            }
                        }
                    }
                    prop_assert_eq!(p.in_balloon(), model.len() as u64);
                }
                let runs: u64 = p.runs().iter().map(|r| r.1).sum();
                prop_assert_eq!(runs, model.len() as u64);
                for f in frames_in_ram() {
                    let w = word(&m, f * PAGE_SIZE);
                    if released.contains(&f) {
                        prop_assert_eq!(w, 0, "page {} was released", f);
                    } else {
                        prop_assert_eq!(w, f | 1 << 40, "page {} was never named", f);
                    }
                }
            }
        }
    }
}
