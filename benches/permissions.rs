//! Data permissions (issue 13): the same 100-rule policy on one
//! resource through guise's evaluator and through Cedar (`cedar-policy`,
//! a dev-dependency only), in one run. Targets:
//!
//! - a decision with 100 rules, uncached: ≤ 2 µs median;
//! - a cached decision: ≤ 0.3 µs;
//! - at least 500,000 decisions/s per core;
//! - filtering a ~1 MB JSON list by rules: ≥ 200 MB/s.
//!
//!     cargo bench --bench permissions
//!
//! Before criterion's own runs, a plain timing loop prints medians and the
//! guise/Cedar ratios (time per decision, guise's over Cedar's: below 1
//! is faster), since criterion reports each function alone.
//!
//! Every rule's criteria hold for the bench user. All but the last rule
//! pin an attribute with `=` or `in`, so the policy's rule index leaves a
//! record no rule grants with the last rule to run rather than all 100.
//! The worst case, where no rule can be indexed and a refused record runs
//! the advice of all 100, is measured too: the same policy with every `=`
//! and `in` written as `starts with` ("no rule indexable"). Cedar always
//! evaluates every policy. Cedar gets prebuilt requests and entities for
//! single decisions, which is its best case.
//!
//! The JSON list is filtered the way the gateway filters an answer
//! (`permissions::answer`): `JsonList::apply_values` reads every item's
//! attribute values in one pass and hands them to `Policy::decide`. A
//! second measure parses the list with serde_json and decides per item,
//! for comparison. The cached decision is what a request does on a hit:
//! build the [`DecisionKey`] (the user's id shared, the record's key
//! copied) and read it from the node's decision cache.
//!
//! The bench allocates with mimalloc, as the `guise` binary does: with
//! glibc's allocator the filter's 1 MB output buffer was sometimes fresh
//! pages from the kernel and sometimes not, which moved the list figure
//! by a fifth between runs.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;

use guise::filter::{JsonList, KeepValues};
use guise::permissions::metrics::Metrics;
use guise::permissions::spec::Settings;
use guise::permissions::{
    Action, AdviceSpec, AttributeSpec, CriterionSpec, DecisionKey, NoLookups, Permissions, Policy,
    PolicySpec, ResourceSpec, RuleSpec, UserFacts,
};
use guise::store::memory::MemoryStore;
use guise::users::User;
use serde::Deserialize;
use serde_json::value::RawValue;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RULES: usize = 100;
const EMAIL: &str = "Bench@Example.test";

/// Record attributes, in the resource's order.
const ATTRIBUTES: [(&str, &str); 6] = [
    ("Id", "/id"),
    ("Name", "/name"),
    ("Account", "/account_id"),
    ("Owner", "/owner/email"),
    ("Status", "/status"),
    ("Amount", "/amount"),
];

fn criterion_spec(attribute: &str, operator: &str, values: &[&str]) -> CriterionSpec {
    CriterionSpec {
        attribute: attribute.into(),
        operator: operator.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

fn advice(attribute: &str, operator: &str, values: &[&str], case_sensitive: bool) -> AdviceSpec {
    AdviceSpec {
        attribute: attribute.into(),
        operator: operator.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
        case_sensitive,
    }
}

/// Rule `i`'s advice, and its Cedar condition on the record.
fn rule_advice(i: usize) -> (Vec<AdviceSpec>, String) {
    if i == RULES - 1 {
        return (
            vec![advice("Owner", "=", &["${user.email}"], false)],
            "principal has email && resource has Owner && resource.Owner__f == principal.email__f"
                .into(),
        );
    }
    match i % 4 {
        0 => (
            vec![advice("Name", "=", &[&format!("Product {i}")], true)],
            format!("resource has Name && resource.Name == \"Product {i}\""),
        ),
        1 => (
            vec![advice(
                "Name",
                "in",
                &[&format!("Product {i}"), &format!("Spark {i}")],
                false,
            )],
            format!(
                "resource has Name && (resource.Name__f == \"product {i}\" || resource.Name__f == \"spark {i}\")"
            ),
        ),
        2 => (
            vec![
                advice(
                    "Account",
                    "in",
                    &[&format!("acc-{i}"), &format!("acc-{}", i + 1)],
                    true,
                ),
                advice("Status", "!=", &["closed"], true),
            ],
            format!(
                "resource has Account && (resource.Account == \"acc-{i}\" || resource.Account == \"acc-{}\") && !(resource has Status && resource.Status == \"closed\")",
                i + 1
            ),
        ),
        _ => (
            vec![
                advice("Amount", ">", &[&(i * 1000).to_string()], true),
                advice("Status", "=", &[&format!("open-{i}")], true),
            ],
            format!(
                "resource has Amount__n && resource.Amount__n > {} && resource has Status && resource.Status == \"open-{i}\"",
                i * 1000
            ),
        ),
    }
}

/// The bench policy with every `=` and `in` advice written as `starts
/// with` on the same values: it decides the bench records alike, but no
/// rule can be indexed, so a refused record runs every rule's advice.
fn unindexed_policy() -> Policy {
    let (mut spec, _) = policy_specs();
    for rule in &mut spec.resources[0].rules {
        for a in &mut rule.advice {
            if a.operator == "=" || a.operator == "in" {
                a.operator = "starts with".into();
            }
        }
    }
    Policy::compile(spec, 1).expect("the unindexed bench policy checks")
}

/// The same 100 rules as a guise policy and as Cedar policies.
fn policies() -> (Policy, PolicySet) {
    let (spec, cedar) = policy_specs();
    (
        Policy::compile(spec, 1).expect("the bench policy checks"),
        cedar.parse().expect("Cedar reads the bench policies"),
    )
}

/// The bench policy as guise's spec and as Cedar's text.
fn policy_specs() -> (PolicySpec, String) {
    let mut rules = Vec::new();
    let mut cedar = String::new();
    for i in 0..RULES {
        let mut criteria = vec![criterion_spec("Region", "in", &["EMEA", "US"])];
        let mut who = String::from(
            "principal has Region && (principal.Region == \"EMEA\" || principal.Region == \"US\")",
        );
        if i.is_multiple_of(3) {
            criteria.push(criterion_spec("Business Unit", "!=", &["BU9"]));
            who += " && !(principal has BU && principal.BU == \"BU9\")";
        }
        let (advice, what) = rule_advice(i);
        let (action, scope) = if i.is_multiple_of(2) {
            (Action::Read, "action == Action::\"read\"")
        } else {
            (
                Action::Write,
                "action in [Action::\"read\", Action::\"write\"]",
            )
        };
        rules.push(RuleSpec {
            name: format!("rule {i}"),
            action,
            criteria,
            advice,
        });
        cedar += &format!(
            "permit(principal, {scope}, resource is Relationship) when {{ {who} && {what} }};\n"
        );
    }
    let spec = PolicySpec {
        user_attributes: vec!["Business Unit".into(), "Region".into()],
        resources: vec![ResourceSpec {
            name: "relationship".into(),
            attributes: ATTRIBUTES
                .iter()
                .map(|(name, field)| AttributeSpec {
                    name: name.to_string(),
                    field: field.to_string(),
                    html: None,
                })
                .collect(),
            rules,
            ..ResourceSpec::default()
        }],
        groups: Vec::new(),
    };
    (spec, cedar)
}

fn bench_user() -> User {
    let mut u = User::new("u-bench", "Bench User", EMAIL);
    u.attributes.insert("Business Unit".into(), "BU1".into());
    u.attributes.insert("Region".into(), "EMEA".into());
    u
}

fn uid(ty: &str, id: &str) -> EntityUid {
    format!("{ty}::\"{id}\"").parse().expect("an entity uid")
}

fn user_entity() -> Entity {
    let s = |v: &str| RestrictedExpression::new_string(v.to_string());
    let attrs = HashMap::from([
        ("email".to_string(), s(EMAIL)),
        ("email__f".to_string(), s(&EMAIL.to_lowercase())),
        ("BU".to_string(), s("BU1")),
        ("Region".to_string(), s("EMEA")),
    ]);
    Entity::new(uid("User", "u-bench"), attrs, HashSet::new()).unwrap()
}

fn record_entity(id: &str, values: &[Option<&str>]) -> Entity {
    let mut attrs = HashMap::new();
    for ((name, _), v) in ATTRIBUTES.iter().zip(values) {
        let Some(v) = v else { continue };
        attrs.insert(
            name.to_string(),
            RestrictedExpression::new_string(v.to_string()),
        );
        attrs.insert(
            format!("{name}__f"),
            RestrictedExpression::new_string(v.to_lowercase()),
        );
        if let Ok(n) = v.parse::<i64>() {
            attrs.insert(format!("{name}__n"), RestrictedExpression::new_long(n));
        }
    }
    Entity::new(uid("Relationship", id), attrs, HashSet::new()).unwrap()
}

/// One Cedar decision on one record, entities built beforehand.
struct CedarCase {
    request: Request,
    entities: Entities,
}

impl CedarCase {
    fn new(id: &str, values: &[Option<&str>]) -> CedarCase {
        let entities =
            Entities::from_entities([user_entity(), record_entity(id, values)], None).unwrap();
        let request = Request::new(
            uid("User", "u-bench"),
            uid("Action", "read"),
            uid("Relationship", id),
            Context::empty(),
            None,
        )
        .unwrap();
        CedarCase { request, entities }
    }

    fn allowed(&self, set: &PolicySet) -> bool {
        Authorizer::new()
            .is_authorized(&self.request, set, &self.entities)
            .decision()
            == cedar_policy::Decision::Allow
    }
}

/// Record `n` of the list: some are granted by an early rule, some by a
/// late one, most by none.
fn item_values(n: usize) -> [String; 6] {
    let owner = if n.is_multiple_of(50) {
        EMAIL.to_lowercase()
    } else {
        format!("owner{}@example.test", n % 40)
    };
    let status = match n % 3 {
        0 => "closed".to_string(),
        1 => format!("open-{}", n % 100),
        _ => "new".to_string(),
    };
    [
        format!("rel-{n}"),
        format!("Product {}", n % 400),
        format!("acc-{}", n % 500),
        owner,
        status,
        ((n * 37) % 200_000).to_string(),
    ]
}

/// A JSON list of relationships of about `bytes` bytes under `/data`.
fn json_list(bytes: usize) -> (Vec<u8>, usize) {
    let mut s = String::from(r#"{"data":["#);
    let mut n = 0;
    while s.len() < bytes {
        if n > 0 {
            s.push(',');
        }
        let [id, name, account, owner, status, amount] = item_values(n);
        s.push_str(&format!(
            r#"{{"id":"{id}","name":"{name}","account_id":"{account}","type":"Product","owner":{{"email":"{owner}","name":"Owner {n}"}},"status":"{status}","amount":{amount},"created_at":"2026-03-01T10:00:00Z","notes":"Relationship number {n} of the bench list, for sizing"}}"#
        ));
        n += 1;
    }
    s.push_str(&format!(r#"],"meta":{{"total":{n}}}}}"#));
    (s.into_bytes(), n)
}

#[derive(Deserialize)]
struct Owner<'a> {
    #[serde(borrow)]
    email: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    owner: Option<Owner<'a>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    amount: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct List<'a> {
    #[serde(borrow)]
    data: Vec<Item<'a>>,
}

impl<'a> Item<'a> {
    fn values(&'a self) -> [Option<&'a str>; 6] {
        [
            self.id.as_deref(),
            self.name.as_deref(),
            self.account_id.as_deref(),
            self.owner.as_ref().and_then(|o| o.email.as_deref()),
            self.status.as_deref(),
            self.amount.map(RawValue::get),
        ]
    }
}

/// Parse the list with serde_json and decide on every item: how many are
/// kept.
fn decide_list(policy: &Policy, facts: &UserFacts, body: &[u8]) -> usize {
    let list: List<'_> = serde_json::from_slice(body).expect("the bench list parses");
    list.data
        .iter()
        .filter(|item| {
            policy
                .decide(facts, 0, Action::Read, &item.values(), &NoLookups)
                .allowed()
        })
        .count()
}

/// The gateway's decision on a list item: its attribute values, in the
/// order of the resource's attributes, through the policy.
struct Decide<'a> {
    policy: &'a Policy,
    facts: &'a UserFacts,
}

impl KeepValues for Decide<'_> {
    fn keep_values(&self, values: &[Option<&str>]) -> bool {
        self.policy
            .decide(self.facts, 0, Action::Read, values, &NoLookups)
            .allowed()
    }
}

/// The list filter the gateway compiles for a route whose answer is a
/// list of the bench resource: every attribute is a reference.
fn values_list() -> JsonList {
    let refs = ATTRIBUTES
        .iter()
        .map(|(name, field)| (name.to_string(), field.to_string()));
    JsonList::new("/data", refs, ["/meta/total"]).expect("the bench list filter compiles")
}

/// A node's permissions with the bench policy, one decision cached, and
/// the key a request builds for it.
struct Cached {
    permissions: Arc<Permissions>,
    user: Arc<str>,
}

impl Cached {
    fn new() -> Cached {
        let (spec, _) = policy_specs();
        // Decisions are kept for `lookup_ttl` (5 s by default); long
        // enough here for criterion's whole run.
        let settings = Settings {
            policy: spec,
            lookup_ttl: std::time::Duration::from_secs(3600),
            ..Settings::default()
        };
        let metrics = Metrics::new(&guise::metrics::Metrics::new()).expect("metrics register");
        let permissions =
            Permissions::new(Arc::new(MemoryStore::new()), Arc::new(settings), metrics);
        let cached = Cached {
            permissions,
            user: "u-bench".into(),
        };
        let policy = cached.permissions.policy();
        let facts = cached.permissions.facts(&policy, &bench_user());
        let (_, values, _) = cases()[2];
        let decision = policy.decide(&facts, 0, Action::Read, &values, &NoLookups);
        cached
            .permissions
            .keep_decision(cached.key("rel-x"), decision);
        cached
    }

    fn key(&self, record: &str) -> DecisionKey {
        DecisionKey {
            epoch: 1,
            user: self.user.clone(),
            resource: 0,
            action: Action::Read,
            record: record.into(),
        }
    }

    /// What a request does on a cache hit.
    fn hit(&self, record: &str) -> bool {
        self.permissions
            .cached_decision(&self.key(record))
            .expect("the decision is cached")
            .allowed()
    }
}

/// Median time of one call of `f`, in nanoseconds, over `rounds` batches
/// of `batch` calls. Half a second of calls first, as criterion warms up: after a single
/// call the 1 MB list ran a fifth slower than in criterion's run of the
/// same code, its buffers and the CPU not yet warm.
fn median_ns(batch: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    let warm = Instant::now();
    while warm.elapsed() < std::time::Duration::from_millis(500) {
        for _ in 0..batch {
            f();
        }
    }
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}

/// Records no rule grants, granted by the first rule and by the last one.
fn cases() -> [(&'static str, [Option<&'static str>; 6], bool); 3] {
    let none = [
        Some("rel-x"),
        Some("Product X"),
        Some("acc-x"),
        Some("other@example.test"),
        Some("closed"),
        Some("5"),
    ];
    let mut first = none;
    first[1] = Some("Product 0");
    let mut last = none;
    last[3] = Some("BENCH@example.test");
    [
        ("100 rules, none grants", none, false),
        ("100 rules, the first grants", first, true),
        ("100 rules, the last grants", last, true),
    ]
}

fn ratios(policy: &Policy, set: &PolicySet, facts: &UserFacts) {
    eprintln!("\n== guise vs Cedar, medians of a plain timing loop ==");
    for (label, values, allowed) in cases() {
        let cedar = CedarCase::new("rel-x", &values);
        assert_eq!(cedar.allowed(set), allowed, "Cedar on {label}");
        let g = median_ns(2_000, 101, || {
            black_box(policy.decide(facts, 0, Action::Read, black_box(&values), &NoLookups));
        });
        let c = median_ns(50, 41, || {
            black_box(cedar.allowed(black_box(set)));
        });
        eprintln!(
            "decision, {label}: guise {g:.0} ns, Cedar {c:.0} ns, guise/Cedar {:.4}",
            g / c
        );
    }
    let records: Vec<[String; 6]> = (0..1000).map(item_values).collect();
    let refs: Vec<[Option<&str>; 6]> = records
        .iter()
        .map(|r| std::array::from_fn(|i| Some(r[i].as_str())))
        .collect();
    let t = median_ns(1, 21, || {
        for r in &refs {
            black_box(policy.decide(facts, 0, Action::Read, black_box(r), &NoLookups));
        }
    }) / refs.len() as f64;
    let cedar: Vec<CedarCase> = refs
        .iter()
        .zip(&records)
        .map(|(r, rec)| CedarCase::new(&rec[0], r))
        .collect();
    let c = median_ns(1, 5, || {
        for case in &cedar {
            black_box(case.allowed(set));
        }
    }) / cedar.len() as f64;
    eprintln!(
        "decisions/s on one core, 1000 list records: guise {:.0}, Cedar {:.0}, guise/Cedar time {:.4}",
        1e9 / t,
        1e9 / c,
        t / c
    );
    let cached = Cached::new();
    assert!(cached.hit("rel-x"));
    let h = median_ns(10_000, 101, || {
        black_box(cached.hit(black_box("rel-x")));
    });
    eprintln!("cached decision (key built, cache read): guise {h:.0} ns");
    let (body, items) = json_list(1 << 20);
    let kept = decide_list(policy, facts, &body);
    let list = values_list();
    let decide = Decide { policy, facts };
    let filtered = list.apply_values(&body, &decide).expect("the list filters");
    assert_eq!(filtered.removed, items - kept);
    let v = median_ns(1, 21, || {
        black_box(list.apply_values(black_box(&body), &decide).unwrap());
    });
    eprintln!(
        "1 MB list, JsonList::apply_values (the gateway's path): guise {:.0} MB/s",
        body.len() as f64 / 1e6 / (v / 1e9)
    );
    let g = median_ns(1, 21, || {
        black_box(decide_list(policy, facts, black_box(&body)));
    });
    let list: List<'_> = serde_json::from_slice(&body).unwrap();
    let c = median_ns(1, 3, || {
        let mut n = 0;
        for item in &list.data {
            let values = item.values();
            let id = values[0].unwrap_or_default();
            if CedarCase::new(id, &values).allowed(set) {
                n += 1;
            }
        }
        assert_eq!(n, kept);
    });
    let mb = body.len() as f64 / 1e6;
    eprintln!(
        "1 MB list ({} bytes, {items} items, {kept} kept), serde_json parse + decide: guise {:.0} MB/s, Cedar (entities per item) {:.1} MB/s, guise/Cedar time {:.4}",
        body.len(),
        mb / (g / 1e9),
        mb / (c / 1e9),
        g / c
    );
    eprintln!();
}

fn bench(c: &mut Criterion) {
    let (policy, set) = policies();
    let facts = policy.facts(&bench_user());
    ratios(&policy, &set, &facts);

    let mut g = c.benchmark_group("permissions decision");
    for (label, values, allowed) in cases() {
        assert_eq!(
            policy
                .decide(&facts, 0, Action::Read, &values, &NoLookups)
                .allowed(),
            allowed,
            "guise on {label}"
        );
        g.bench_function(format!("guise, {label}"), |b| {
            b.iter(|| policy.decide(&facts, 0, Action::Read, black_box(&values), &NoLookups))
        });
        let cedar = CedarCase::new("rel-x", &values);
        g.bench_function(format!("cedar, {label}"), |b| {
            b.iter(|| cedar.allowed(black_box(&set)))
        });
    }
    let unindexed = unindexed_policy();
    let (_, none, _) = cases()[0];
    assert!(!unindexed
        .decide(&facts, 0, Action::Read, &none, &NoLookups)
        .allowed());
    g.bench_function("guise, 100 rules, none grants, no rule indexable", |b| {
        b.iter(|| unindexed.decide(&facts, 0, Action::Read, black_box(&none), &NoLookups))
    });
    g.finish();

    let cached = Cached::new();
    let mut g = c.benchmark_group("permissions cached decision");
    g.bench_function("guise, key built and read from the decision cache", |b| {
        b.iter(|| cached.hit(black_box("rel-x")))
    });
    g.finish();

    let mut g = c.benchmark_group("permissions facts");
    let user = bench_user();
    g.bench_function("guise, user facts over 100 rules", |b| {
        b.iter(|| policy.facts(black_box(&user)))
    });
    g.finish();

    let records: Vec<[String; 6]> = (0..1000).map(item_values).collect();
    let refs: Vec<[Option<&str>; 6]> = records
        .iter()
        .map(|r| std::array::from_fn(|i| Some(r[i].as_str())))
        .collect();
    let mut g = c.benchmark_group("permissions decisions per second");
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function("guise, 1000 records", |b| {
        b.iter(|| {
            refs.iter()
                .filter(|r| {
                    policy
                        .decide(&facts, 0, Action::Read, black_box(*r), &NoLookups)
                        .allowed()
                })
                .count()
        })
    });
    let cedar: Vec<CedarCase> = refs
        .iter()
        .zip(&records)
        .map(|(r, rec)| CedarCase::new(&rec[0], r))
        .collect();
    g.sample_size(10);
    g.bench_function("cedar, 1000 records", |b| {
        b.iter(|| cedar.iter().filter(|c| c.allowed(&set)).count())
    });
    g.finish();

    let (body, items) = json_list(1 << 20);
    let kept = decide_list(&policy, &facts, &body);
    eprintln!(
        "JSON list: {} bytes, {items} items, {kept} kept",
        body.len()
    );
    let list = values_list();
    let decide = Decide {
        policy: &policy,
        facts: &facts,
    };
    assert_eq!(
        list.apply_values(&body, &decide).unwrap().removed,
        items - kept
    );
    let mut g = c.benchmark_group("permissions json list");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("guise, JsonList::apply_values (the gateway's path)", |b| {
        b.iter(|| list.apply_values(black_box(&body), &decide).unwrap())
    });
    g.bench_function("guise, serde_json parse + decide per item", |b| {
        b.iter(|| decide_list(&policy, &facts, black_box(&body)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
