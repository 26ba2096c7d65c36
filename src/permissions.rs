//! Data permissions: Gainsight-style sharing rules, decided by the gateway
//! per request in front of an app that has none.
//!
//! - [`spec`] is the policy as written (YAML, admin API): resources with
//!   their permission attributes and relations, the Everyone switch,
//!   sharing rules (criteria on the user, advice on the record), user
//!   attributes and sharing groups. [`PolicySpec::check`] names the bad
//!   field.
//! - [`policy`] compiles a checked spec into indexed data and decides:
//!   [`Policy::facts`] evaluates the user side once per user,
//!   [`Policy::decide`] runs the record side, first grant wins. Both are
//!   pure, so they are tested and benchmarked without I/O.
//!
//! The rest is the run-time around that core: the policy kept in step on
//! every node, caches under a policy epoch, lookups of records from the
//! upstream, the pipeline's stage 8 and the answer filters, the admin API
//! and explain endpoint, and metrics.

pub mod ops;
pub mod policy;
pub mod spec;

pub use policy::{Decision, Grant, GrantView, Lookups, NoLookups, Policy, Related, UserFacts};
pub use spec::{
    Action, AdviceSpec, AttributeSpec, CriterionSpec, GroupSpec, LookupSpec, PolicySpec,
    RelationSpec, ResourceSpec, RuleSpec, SpecError,
};

/// A record to decide on: its resource, and its attribute values in the
/// resource's attribute order (`None`: the record has no such value).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub resource: usize,
    pub values: &'a [Option<&'a str>],
}

/// Stage 8's core, as one call: may `facts`' user take `action` on
/// `record` under `policy`? Related records that need a lookup come from
/// `lookups`.
pub fn decide(
    policy: &Policy,
    facts: &UserFacts,
    action: Action,
    record: Record<'_>,
    lookups: &dyn Lookups,
) -> Decision {
    policy.decide(facts, record.resource, action, record.values, lookups)
}
