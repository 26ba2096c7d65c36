//! The response filters (JSON lists, records, redaction, HTML) over
//! arbitrary bodies. The checks live in `guise::fuzzing`, shared with
//! `tests/fuzz_seeds.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| guise::fuzzing::check_answer_filters(data));
