#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coder_guard_fuzz::admission_review(data));
