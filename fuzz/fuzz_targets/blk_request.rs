//! Fuzz target: see fuzz_support::blk_request.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::blk_request(data));
