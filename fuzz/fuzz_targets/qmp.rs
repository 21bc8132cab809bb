//! Fuzz target: see fuzz_support::qmp.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::qmp(data));
