//! The JSON list filter alone, whose reader checks the body as serde_json
//! would. The checks live in `guise::fuzzing`, shared with
//! `tests/fuzz_seeds.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| guise::fuzzing::check_json_list(data));
