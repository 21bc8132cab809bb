//! Fuzz target: see fuzz_support::json_config.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_support::json_config(data));
