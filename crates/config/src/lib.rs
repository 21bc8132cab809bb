//! Configuration: the command line and `-config` JSON, parsed into one validated [`VmConfig`].

pub mod model;

pub use model::*;
