//! Stage 8 of the pipeline: the data-permission decision for one request,
//! and the lookups it may need.
//!
//! The route names the resource and the action (GET and HEAD read, other
//! methods write, unless the route says). A record the request names in
//! its path or query is decided on before the request goes upstream: by
//! its key alone when the resource's rules need nothing else, otherwise on
//! the record fetched from the upstream under guise's own signed service
//! identity (a lookup). A read whose answer is one JSON record is instead
//! judged on that answer (see [`super::answer`]), which saves the lookup.
//! Lists and pages are filtered on the way back.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use pingora::http::RequestHeader;

use super::policy::{Decision, Lookups, Policy, Related, UserFacts};
use super::registry::{DecisionKey, Permissions};
use super::PermissionError;
use crate::config::permissions::{Action, LookupSpec};
use crate::live::Live;
use crate::lookup::{scalar_text, Fetched};
use crate::routes::{Action as RouteAction, RecordSource, RouteSpec, RouteTable};
use crate::subject::Subject;
use crate::users::User;

/// The user id a lookup is signed with; upstreams that check identity
/// headers should let it read every record.
pub const SERVICE_USER: &str = "guise-permissions";

/// Who a request's data permissions are decided for, kept in the request
/// context for the answer filters.
#[derive(Clone)]
pub struct Viewer {
    pub permissions: Arc<Permissions>,
    pub policy: Arc<Policy>,
    pub facts: Arc<UserFacts>,
}

impl Viewer {
    /// The key this viewer's decision on `key` of `resource` is cached
    /// under.
    fn decision_key(&self, resource: usize, action: Action, key: &str) -> DecisionKey {
        DecisionKey {
            epoch: self.policy.epoch,
            user: self.facts.user_id.clone(),
            resource: resource as u32,
            action,
            record: key.into(),
        }
    }

    /// Lookups from the cache only: a list filter cannot wait for one.
    pub fn cached_lookups(&self) -> CachedLookups<'_> {
        CachedLookups { viewer: self }
    }
}

pub struct CachedLookups<'a> {
    viewer: &'a Viewer,
}

impl Lookups for CachedLookups<'_> {
    fn related(&self, resource: usize, key: &str) -> Related {
        self.viewer
            .permissions
            .cached_lookup(self.viewer.policy.epoch, resource, key)
            .unwrap_or(Related::Unavailable)
    }
}

/// What stage 8 decided.
pub enum Access {
    /// The policy restricts nothing this user sees (no restricted
    /// resource, or a super admin).
    Open,
    /// Answers are filtered for this viewer.
    Restricted(Viewer),
}

/// The action a request takes on its route's resource.
pub fn action_of(route: &RouteSpec, method: &http::Method) -> Action {
    match route.action {
        Some(RouteAction::Read) => Action::Read,
        Some(RouteAction::Write) => Action::Write,
        None if method == http::Method::GET || method == http::Method::HEAD => Action::Read,
        None => Action::Write,
    }
}

/// The user rules see for a request without a session: no attributes, no
/// groups, so only Everyone and rules without criteria reach them.
fn anonymous() -> User {
    User::new("", "", "")
}

/// What stage 8 still has to do after its synchronous part.
pub enum Step {
    /// Decided.
    Done(Access),
    /// Records must be looked up first: [`finish`] does it. Kept apart so
    /// that the common request (decided from caches, or by a key) never
    /// builds the lookup's large future.
    Lookups(Pending),
}

/// Decisions that wait for lookups: `(resource, action, key)`, each of
/// which must be allowed.
pub struct Pending {
    viewer: Viewer,
    checks: Vec<(usize, Action, String)>,
}

/// Stage 8: decide what `subject` may do with the records the request
/// names and how its answer is filtered, as far as caches and keys allow;
/// what needs a lookup is left to [`finish`].
pub fn check(
    permissions: &Arc<Permissions>,
    live: &Live,
    route: Option<usize>,
    subject: Option<&Subject>,
    req: &RequestHeader,
) -> Result<Step, PermissionError> {
    let policy = permissions.policy();
    if policy.is_open() {
        return Ok(Step::Done(Access::Open));
    }
    let anon;
    let user = match subject {
        Some(s) => &*s.effective,
        None => {
            anon = anonymous();
            &anon
        }
    };
    let facts = permissions.facts(&policy, user);
    if facts.super_admin {
        return Ok(Step::Done(Access::Open));
    }
    let viewer = Viewer {
        permissions: permissions.clone(),
        policy,
        facts,
    };
    let Some((index, route)) = route.and_then(|i| Some((i, live.routes.routes().get(i)?))) else {
        return Ok(Step::Done(Access::Restricted(viewer)));
    };
    let Some(resource) = route
        .resource
        .as_deref()
        .and_then(|r| viewer.policy.resource(r))
    else {
        return Ok(Step::Done(Access::Restricted(viewer)));
    };
    let action = action_of(route, &req.method);
    // Records of other protected resources the request names (a list of
    // one relationship's CTAs) must be readable themselves.
    let mut checks = Vec::new();
    for r in &route.records {
        let Some(other) = viewer.policy.resource(&r.resource) else {
            continue;
        };
        if other == resource || !viewer.policy.restricts(other) {
            continue;
        }
        for key in named_keys(&live.routes, index, &r.from, req) {
            checks.push((other, Action::Read, key));
        }
    }
    let named: Vec<String> = route
        .records
        .iter()
        .filter(|r| viewer.policy.resource(&r.resource) == Some(resource))
        .flat_map(|r| named_keys(&live.routes, index, &r.from, req))
        .collect();
    let judged_on_answer = action == Action::Read
        && route.answer.json_record.is_some()
        && !viewer.policy.key_only(resource);
    if named.is_empty() || judged_on_answer {
        if action == Action::Write {
            // A write naming no record (a create, or a route whose
            // `records` do not say where its record is): only what grants
            // writes on every record of the resource allows it.
            let d = viewer
                .policy
                .decide_any_record(&viewer.facts, resource, action);
            viewer.permissions.metrics.count(&d);
            refuse(&viewer, d, resource, action)?;
        }
        // A read of a list, a page or a record judged on the answer is
        // filtered on the way back.
    } else {
        // Every record named must be allowed: the app may read any of a
        // repeated query parameter's values.
        checks.extend(named.into_iter().map(|k| (resource, action, k)));
    }
    let mut pending = Vec::new();
    for (r, a, key) in checks {
        match decide_now(&viewer, r, a, &key) {
            Some(d) => {
                viewer.permissions.metrics.count(&d);
                refuse(&viewer, d, r, a)?;
            }
            None => pending.push((r, a, key)),
        }
    }
    if pending.is_empty() {
        return Ok(Step::Done(Access::Restricted(viewer)));
    }
    Ok(Step::Lookups(Pending {
        viewer,
        checks: pending,
    }))
}

/// The decisions stage 8 left for lookups.
pub async fn finish(p: Pending, live: &Live, unix_now: u64) -> Result<Access, PermissionError> {
    for (r, a, key) in &p.checks {
        let d = decide_named(&p.viewer, live, *r, *a, key, unix_now).await;
        p.viewer.permissions.metrics.count(&d);
        refuse(&p.viewer, d, *r, *a)?;
    }
    Ok(Access::Restricted(p.viewer))
}

/// A decision without I/O, when one can be had: cached, or made from the
/// key when the rules need nothing else and no related record is missing.
fn decide_now(viewer: &Viewer, resource: usize, action: Action, key: &str) -> Option<Decision> {
    let cache_key = viewer.decision_key(resource, action, key);
    if let Some(d) = viewer.permissions.cached_decision(&cache_key) {
        return Some(d);
    }
    let policy = &viewer.policy;
    if !policy.key_only(resource) {
        return None;
    }
    let values = policy.record_of_key(resource, key);
    let none = HashMap::new();
    let recording = Recording {
        fetched: &none,
        missed: RefCell::new(Vec::new()),
    };
    let d = policy.decide(&viewer.facts, resource, action, &values, &recording);
    if !d.allowed() && !recording.missed.into_inner().is_empty() {
        return None;
    }
    viewer.permissions.keep_decision(cache_key, d);
    Some(d)
}

/// A decision other than a grant as the refusal it is. A denial names the
/// record's resource; a failed lookup the resource that could not be
/// fetched.
fn refuse(
    viewer: &Viewer,
    d: Decision,
    resource: usize,
    action: Action,
) -> Result<(), PermissionError> {
    match d {
        Decision::Allowed(_) => Ok(()),
        Decision::Denied => Err(PermissionError::Denied {
            resource: viewer.policy.resource_name(resource).to_string(),
            action,
        }),
        Decision::Unavailable { resource } => Err(PermissionError::LookupFailed {
            resource: viewer.policy.resource_name(resource).to_string(),
        }),
    }
}

/// The keys the request names for `from`: a path parameter, or every
/// value of a query parameter, decoded; empty ones name nothing.
fn named_keys(
    table: &RouteTable,
    index: usize,
    from: &RecordSource,
    req: &RequestHeader,
) -> Vec<String> {
    let keys = match from {
        RecordSource::Param(name) => table
            .param(index, req.uri.path(), name)
            .into_iter()
            .collect(),
        RecordSource::Query(name) => {
            url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
                .filter(|(k, _)| k == name.as_str())
                .map(|(_, v)| v.into_owned())
                .collect::<Vec<_>>()
        }
    };
    keys.into_iter().filter(|k| !k.is_empty()).collect()
}

/// Decide on the record `key` of `resource`, looking up what the rules
/// need; the decision is cached under the policy epoch.
pub async fn decide_named(
    viewer: &Viewer,
    live: &Live,
    resource: usize,
    action: Action,
    key: &str,
    unix_now: u64,
) -> Decision {
    let cache_key = viewer.decision_key(resource, action, key);
    if let Some(d) = viewer.permissions.cached_decision(&cache_key) {
        return d;
    }
    let d = decide_with_lookups(viewer, live, resource, action, key, unix_now).await;
    viewer.permissions.keep_decision(cache_key, d);
    d
}

/// As [`decide_named`], without the decision cache: for the explain
/// endpoint, which must show what the rules say now.
pub async fn decide_fresh(
    viewer: &Viewer,
    live: &Live,
    resource: usize,
    action: Action,
    key: &str,
    unix_now: u64,
) -> Decision {
    decide_with_lookups(viewer, live, resource, action, key, unix_now).await
}

async fn decide_with_lookups(
    viewer: &Viewer,
    live: &Live,
    resource: usize,
    action: Action,
    key: &str,
    unix_now: u64,
) -> Decision {
    let policy = &viewer.policy;
    let own: Vec<Option<String>> = if policy.key_only(resource) {
        let record = policy.record_of_key(resource, key);
        record.iter().map(|v| v.map(str::to_string)).collect()
    } else {
        match lookup(viewer, live, resource, key, unix_now).await {
            Related::Found(values) => values,
            Related::Missing => return Decision::Denied,
            Related::Unavailable => return Decision::Unavailable { resource },
        }
    };
    let values: Vec<Option<&str>> = own.iter().map(|v| v.as_deref()).collect();
    // Decide, fetch what the decision missed, and decide again, until
    // nothing more is missing (bounded by the relations' depth).
    let mut fetched: HashMap<(usize, String), Related> = HashMap::new();
    for _ in 0..8 {
        let recording = Recording {
            fetched: &fetched,
            missed: RefCell::new(Vec::new()),
        };
        let d = policy.decide(&viewer.facts, resource, action, &values, &recording);
        let missed = recording.missed.into_inner();
        if d.allowed() || missed.is_empty() {
            return d;
        }
        for (res, k) in missed {
            let got = lookup(viewer, live, res, &k, unix_now).await;
            fetched.insert((res, k), got);
        }
    }
    policy.decide(&viewer.facts, resource, action, &values, &Fixed(&fetched))
}

/// Lookups answered from what was fetched, recording what was not.
struct Recording<'a> {
    fetched: &'a HashMap<(usize, String), Related>,
    missed: RefCell<Vec<(usize, String)>>,
}

impl Lookups for Recording<'_> {
    fn related(&self, resource: usize, key: &str) -> Related {
        match self.fetched.get(&(resource, key.to_string())) {
            Some(r) => r.clone(),
            None => {
                self.missed.borrow_mut().push((resource, key.to_string()));
                Related::Unavailable
            }
        }
    }
}

struct Fixed<'a>(&'a HashMap<(usize, String), Related>);

impl Lookups for Fixed<'_> {
    fn related(&self, resource: usize, key: &str) -> Related {
        self.0
            .get(&(resource, key.to_string()))
            .cloned()
            .unwrap_or(Related::Unavailable)
    }
}

/// The record `key` of `resource`, from the lookup cache or the upstream.
async fn lookup(
    viewer: &Viewer,
    live: &Live,
    resource: usize,
    key: &str,
    unix_now: u64,
) -> Related {
    let policy = &viewer.policy;
    let name = policy.resource_name(resource);
    let spec = policy
        .spec()
        .resources
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.lookup.clone());
    let Some(spec) = spec else {
        tracing::warn!(
            resource = name,
            "a rule needs a record of this resource and it has no `lookup`"
        );
        return Related::Unavailable;
    };
    let attributes: Vec<String> = policy.resources()[resource]
        .attributes
        .iter()
        .map(|a| a.field.clone())
        .collect();
    let permissions = &viewer.permissions;
    permissions
        .lookup(policy.epoch, resource, key, || async {
            let started = std::time::Instant::now();
            let got = fetch(permissions, live, &spec, &attributes, key, unix_now).await;
            permissions
                .metrics
                .lookup_duration
                .observe(started.elapsed().as_secs_f64());
            let result = match &got {
                Related::Found(_) => "found",
                Related::Missing => "missing",
                Related::Unavailable => "failed",
            };
            permissions
                .metrics
                .lookups
                .with_label_values(&[result])
                .inc();
            got
        })
        .await
}

/// Fetch one record from the upstream and read its attributes.
async fn fetch(
    permissions: &Permissions,
    live: &Live,
    spec: &LookupSpec,
    fields: &[String],
    key: &str,
    unix_now: u64,
) -> Related {
    let got = permissions
        .lookup
        .record(live, &spec.path, &spec.pointer, key, unix_now)
        .await;
    match got {
        Fetched::Found(record) => Related::Found(
            fields
                .iter()
                .map(|f| record.pointer(f).and_then(scalar_text))
                .collect(),
        ),
        Fetched::Missing => Related::Missing,
        Fetched::Failed => Related::Unavailable,
    }
}
