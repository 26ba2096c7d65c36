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

pub mod answer;
pub mod metrics;
pub mod policy;
mod registry;
pub mod request;

pub use crate::config::permissions as spec;
pub use crate::config::permissions::ops;

pub use policy::{Decision, Grant, GrantView, Lookups, NoLookups, Policy, Related, UserFacts};
pub use registry::{DecisionKey, Permissions, UpdateError, POLICY, USER_DATA};
pub use request::{Access, Viewer};
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

/// Why stage 8 or an answer filter refused. Messages name the resource and
/// the action, never a rule: rules are for admins (see the explain
/// endpoint).
#[derive(Debug, thiserror::Error)]
pub enum PermissionError {
    #[error("no rule grants {} on this {resource}", action.as_str().to_uppercase())]
    Denied { resource: String, action: Action },
    #[error("the {resource} record this request depends on could not be looked up to decide on it; try again shortly")]
    LookupFailed { resource: String },
    #[error(transparent)]
    Filter(crate::filter::FilterError),
}

impl crate::respond::Refuse for PermissionError {
    fn status(&self) -> u16 {
        match self {
            PermissionError::Denied { .. } => 403,
            PermissionError::LookupFailed { .. } => 503,
            PermissionError::Filter(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PermissionError::Denied { .. } => "permission_denied",
            PermissionError::LookupFailed { .. } => "permission_lookup_failed",
            PermissionError::Filter(e) => e.code(),
        }
    }
}
