//! Replays every committed fuzz seed (`fuzz/seeds/<target>/`) through the
//! same checks the cargo-fuzz targets run (`guise::fuzzing`), so the
//! invariants are tested on stable in every `cargo test`, not only by
//! whoever runs the nightly fuzzer.
//!
//! Inputs the fuzzer found to break the library are kept apart, in
//! `fuzz/regressions/<target>/`, and replayed by the ignored test at the
//! end: they fail until the library is fixed (`cargo test --test fuzz_seeds
//! -- --ignored`), and then move into the seeds.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use guise::fuzzing;

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 8] = [
    ("request_target", fuzzing::check_request_target),
    ("identity_strip", fuzzing::check_identity_strip),
    ("cookies", fuzzing::check_cookies),
    ("config", fuzzing::check_config),
    ("endpoint_json", fuzzing::check_endpoint_json),
    ("answer_filters", fuzzing::check_answer_filters),
    ("json_list", fuzzing::check_json_list),
    ("partner_import", fuzzing::check_partner_import),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `check` on every file under `dir`; returns the ones that panicked,
/// with the message, so one broken seed does not hide the others.
fn replay(dir: &Path, check: Check) -> (usize, Vec<String>) {
    let files = files(dir);
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        if let Err(e) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", file.display()));
        }
    }
    (files.len(), failed)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_seed_passes_its_targets_checks() {
    for (target, check) in TARGETS {
        let (count, failed) = replay(&root().join("seeds").join(target), check);
        assert!(count >= 12, "{target}: only {count} seeds");
        assert!(failed.is_empty(), "{target}: {failed:#?}");
    }
}

#[test]
#[ignore = "inputs that break the library, reported and awaiting a fix there"]
fn known_regressions_pass_once_fixed() {
    let mut failed = Vec::new();
    for (target, check) in TARGETS {
        failed.extend(replay(&root().join("regressions").join(target), check).1);
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
