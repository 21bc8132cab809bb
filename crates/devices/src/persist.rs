//! Snapshot state, saved and restored by each component next to its own code, in the spirit of
//! Firecracker's `Persist`: a snapshot is the tree of these states, serialised once (see the
//! `snapshot` docs in docs/snapshots.md when they land). Every stateful device implements it in
//! its folder's `persist.rs` (or beside its code for one-file legacy devices); a new device
//! must too.
//!
//! `save` is called with the VM paused and must not change what the guest sees. `restore`
//! builds the component from its state and whatever host resources it needs
//! (`ConstructorArgs`: guest memory, irqfds, backends), never from the guest.

/// A component that can be saved into and rebuilt from a snapshot.
pub trait Persist: Sized {
    /// What is saved: plain data, versioned with the snapshot format.
    type State: serde::Serialize + serde::de::DeserializeOwned;
    /// What restoring needs besides the state.
    type ConstructorArgs;
    type Error: std::fmt::Display;

    fn save(&self) -> Self::State;
    fn restore(args: Self::ConstructorArgs, state: &Self::State) -> Result<Self, Self::Error>;
}
