//! Data-permission policies: rule and advice parsing, checking, compiling
//! and deciding (issue 13). The check lives in `permissions_check.rs`,
//! shared with `tests/permissions_model.rs`, which replays the seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "permissions_check.rs"]
mod permissions_check;

fuzz_target!(|data: &[u8]| permissions_check::check(data));
