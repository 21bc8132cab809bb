//! Fuzz target: see fuzz_support::cmdline.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::cmdline(data));
