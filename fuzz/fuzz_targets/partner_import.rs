//! The partner import: arbitrary bytes as a CRM export's CSV file. The
//! checks live in `guise::fuzzing`, shared with `tests/fuzz_seeds.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| guise::fuzzing::check_partner_import(data));
