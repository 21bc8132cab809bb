//! virtio-balloon's snapshot state: its configuration, the target and the driver's count, and
//! which page frames are in the balloon.
//!
//! The machine does not save a VM with a balloon: the seeds (and StratoVirt) refuse snapshots
//! of such VMs, so [`super::Balloon`]'s `can_save` says no and `migrate` is refused before
//! anything is paused. The state is complete anyway, so that lifting the refusal needs only
//! the transport's part and the attach step.

use super::pages::{FrameRun, PagesState};
use super::Balloon;
use crate::bus::lock;
use crate::Persist;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use vm_memory::GuestMemoryMmap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalloonState {
    pub deflate_on_oom: bool,
    pub free_page_reporting: bool,
    /// `num_pages`.
    pub target_pages: u32,
    /// `actual`, as the driver wrote it.
    pub actual_pages: u32,
    pub config_generation: u32,
    pub pages: PagesState,
}

impl Persist for Balloon {
    type State = BalloonState;
    /// The guest RAM of the restored machine.
    type ConstructorArgs = GuestMemoryMmap;
    type Error = String;

    fn save(&self) -> BalloonState {
        let s = &self.shared;
        BalloonState {
            deflate_on_oom: self.deflate_on_oom(),
            free_page_reporting: self.free_page_reporting(),
            target_pages: s.target.load(Ordering::SeqCst),
            actual_pages: s.actual.load(Ordering::SeqCst),
            config_generation: s.generation.load(Ordering::SeqCst),
            pages: PagesState {
                runs: lock(&s.pages).runs(),
            },
        }
    }

    fn restore(mem: GuestMemoryMmap, state: &BalloonState) -> Result<Self, String> {
        let b = Balloon::new(&mem, state.deflate_on_oom, state.free_page_reporting)
            .map_err(|e| format!("cannot start the balloon thread: {e}"))?;
        let s = &b.shared;
        if state.target_pages > s.ram_pages {
            return Err(format!(
                "the balloon's target of {} pages is more than the guest's {} pages",
                state.target_pages, s.ram_pages
            ));
        }
        let runs: &[FrameRun] = &state.pages.runs;
        lock(&s.pages).mark(runs)?;
        s.target.store(state.target_pages, Ordering::SeqCst);
        s.actual.store(state.actual_pages, Ordering::SeqCst);
        s.generation
            .store(state.config_generation, Ordering::SeqCst);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    #[test]
    fn state_round_trips_through_json() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 8 << 20)]).unwrap();
        let b = Balloon::new(&mem, true, false).unwrap();
        let h = b.handle();
        h.set_target(6 << 20);
        lock(&b.shared.pages).inflate(&mut [10, 11, 12, 500]);
        b.shared.actual.store(4, Ordering::SeqCst);
        let state = b.save();
        assert_eq!(state.target_pages, 512);
        assert_eq!(state.pages.runs, vec![(10, 3), (500, 1)]);
        let json = serde_json::to_string(&state).unwrap();
        let back: BalloonState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);

        let r = Balloon::restore(mem.clone(), &back).unwrap();
        assert_eq!(r.save(), state);
        assert!(r.deflate_on_oom() && !r.free_page_reporting());
        assert_eq!(r.handle().target_bytes(), 6 << 20);
        assert_eq!(r.handle().actual_bytes(), (8 << 20) - 4 * 4096);
        assert_eq!(r.handle().pages_in_balloon(), 4);

        let mut bad = state.clone();
        bad.pages.runs.push((1 << 20, 1));
        assert!(Balloon::restore(mem.clone(), &bad).is_err());
        bad = state;
        bad.target_pages = 4096;
        assert!(Balloon::restore(mem, &bad).is_err());
    }
}
