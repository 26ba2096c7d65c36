//! The check behind the `permissions` fuzz target, kept apart from it so
//! that `tests/permissions_model.rs` replays the committed seeds
//! (`fuzz/seeds/permissions/`) through the same code on stable.
//!
//! Input layout (seeds stay readable text): a data-permission policy in
//! JSON or YAML, then optionally a line `#---` and what to decide on, one
//! item a line: `@NAME=VALUE` sets a user attribute (`@email=…`, `@id=…`
//! set the built-ins), `~` is an absent record value, anything else a
//! record value, in the resource's attribute order.
//!
//! Rule and advice parsing must never panic, and beyond that:
//! - `Policy::compile` fails exactly when `PolicySpec::check` does, with
//!   the same error, which names a field;
//! - a checked spec survives a JSON round trip;
//! - on every resource, a super admin is allowed, WRITE allowed implies
//!   READ allowed, and a grant names a resource and rule that exist.

use std::collections::HashMap;

use guise::permissions::{Action, Decision, Grant, Lookups, Policy, PolicySpec, Related};
use guise::users::{Role, User};

/// Related records: found (the input's values), missing or unavailable,
/// by the key's length, so every branch is reachable.
struct Lookup<'a>(&'a [Option<String>]);

impl Lookups for Lookup<'_> {
    fn related(&self, _resource: usize, key: &str) -> Related {
        match key.len() % 3 {
            0 => Related::Found(self.0.to_vec()),
            1 => Related::Missing,
            _ => Related::Unavailable,
        }
    }
}

pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (policy, tail) = match text.rfind("\n#---") {
        Some(i) => (&text[..i], &text[i + 5..]),
        None => (text, ""),
    };
    let spec: PolicySpec = match serde_json::from_str(policy) {
        Ok(spec) => spec,
        Err(_) => match serde_saphyr::from_str(policy) {
            Ok(spec) => spec,
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        },
    };
    let checked = spec.check();
    let compiled = Policy::compile(spec.clone(), 7);
    let policy = match (checked, compiled) {
        (Err(e), Err(f)) => {
            assert_eq!(e, f, "compile fails as check does");
            assert!(!e.field.is_empty(), "the error names a field: {e}");
            let _ = e.to_string();
            return;
        }
        (Ok(()), Ok(policy)) => policy,
        (Ok(()), Err(e)) => panic!("a checked spec does not compile: {e}"),
        (Err(e), Ok(_)) => panic!("a spec check refuses compiles: {e}"),
    };
    let json = serde_json::to_string(&spec).expect("a spec serialises");
    let again: PolicySpec = serde_json::from_str(&json).expect("a serialised spec reads back");
    assert_eq!(again, spec, "a spec survives a JSON round trip");

    let mut user = User::new("u1", "Fuzz User", "fuzz@example.test");
    let mut record: Vec<Option<String>> = Vec::new();
    for line in tail.lines().filter(|l| !l.is_empty()) {
        if let Some(attr) = line.strip_prefix('@') {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k {
                "id" => user.id = v.to_string(),
                "email" => user.email = v.to_string(),
                "name" => user.name = v.to_string(),
                _ => {
                    user.attributes.insert(k.to_string(), v.to_string());
                }
            }
        } else if line == "~" {
            record.push(None);
        } else {
            record.push(Some(line.to_string()));
        }
    }
    let facts = policy.facts(&user);
    let _ = policy.groups_of(&user);
    let mut admin = user.clone();
    admin.roles = vec![Role::SuperAdmin];
    let admin = policy.facts(&admin);
    let lookups = Lookup(&record);
    // Records shorter or longer than the resource's attributes are allowed
    // in: a decision must not trust the caller's slice length.
    let values: Vec<Option<&str>> = record.iter().map(|v| v.as_deref()).collect();
    let rules: HashMap<usize, usize> = spec
        .resources
        .iter()
        .enumerate()
        .map(|(i, r)| (i, r.rules.len()))
        .collect();
    for resource in 0..policy.resources().len() + 1 {
        let read = policy.decide(&facts, resource, Action::Read, &values, &lookups);
        let write = policy.decide(&facts, resource, Action::Write, &values, &lookups);
        assert!(
            !write.allowed() || read.allowed(),
            "WRITE {write:?} without READ {read:?}"
        );
        for d in [read, write] {
            match d {
                Decision::Allowed(g @ Grant::Rule { resource: r, rule }) => {
                    assert!(r < policy.resources().len());
                    assert!((rule as usize) < rules[&r]);
                    let view = policy.describe(g);
                    assert!(view.rule.is_some());
                }
                Decision::Allowed(g) => {
                    let _ = policy.describe(g);
                }
                Decision::Unavailable { resource: r } => assert!(r < policy.resources().len()),
                Decision::Denied => {}
            }
        }
        for action in [Action::Read, Action::Write] {
            assert_eq!(
                policy.decide(&admin, resource, action, &values, &lookups),
                Decision::Allowed(Grant::SuperAdmin)
            );
        }
        let _ = policy.key_only(resource);
        let _ = policy.restricts(resource);
    }
}
