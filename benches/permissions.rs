//! Data-permission decisions (issue 13): the same 100-rule policy on one
//! resource through guise's evaluator and through Cedar (`cedar-policy`,
//! a dev-dependency only), in one run. Targets:
//!
//! - a decision with 100 rules, uncached: ≤ 2 µs median;
//! - at least 500,000 decisions/s per core;
//! - filtering a ~1 MB JSON list by rules: ≥ 200 MB/s.
//!
//!     cargo bench --bench permissions
//!
//! Before criterion's own runs, a plain timing loop prints medians and the
//! guise/Cedar ratios (time per decision, guise's over Cedar's: below 1
//! is faster), since criterion reports each function alone.
//!
//! Every rule's criteria hold for the bench user, so a record no rule
//! grants runs the advice of all 100 (the worst case); Cedar always
//! evaluates every policy. Cedar gets prebuilt requests and entities for
//! single decisions, which is its best case.
//!
//! The JSON list: `guise::filter::JsonList` only hands its decision a
//! record's id so far, so the list is filtered by `JsonList::apply` with a
//! decision that finds the item's values, extracted beforehand with
//! serde_json, by id; a second measure parses the list with serde_json
//! and decides on every item, parse included. Neither is the final
//! record-values filter. No decision cache exists in `src/permissions`
//! yet, so no cached decision is measured.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::Instant;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, PolicySet, Request, RestrictedExpression,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use guise::filter::JsonList;
use guise::permissions::{
    Action, AdviceSpec, AttributeSpec, CriterionSpec, NoLookups, Policy, PolicySpec, ResourceSpec,
    RuleSpec, UserFacts,
};
use guise::users::User;
use serde::Deserialize;
use serde_json::value::RawValue;

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

/// The same 100 rules as a guise policy and as Cedar policies.
fn policies() -> (Policy, PolicySet) {
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
    (
        Policy::compile(spec, 1).expect("the bench policy checks"),
        cedar.parse().expect("Cedar reads the bench policies"),
    )
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

/// Median time of one call of `f`, in nanoseconds, over `rounds` batches
/// of `batch` calls.
fn median_ns(batch: usize, rounds: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..batch {
        f();
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
    let (body, items) = json_list(1 << 20);
    let kept = decide_list(policy, facts, &body);
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
    // Values by id, extracted beforehand (see the top of the file).
    let parsed: List<'_> = serde_json::from_slice(&body).unwrap();
    let by_id: HashMap<&str, [Option<&str>; 6]> = parsed
        .data
        .iter()
        .map(|item| (item.id.as_deref().unwrap(), item.values()))
        .collect();
    let keep = |_: &str, id: &str| {
        by_id.get(id).is_some_and(|values| {
            policy
                .decide(&facts, 0, Action::Read, values, &NoLookups)
                .allowed()
        })
    };
    let list = JsonList::new("/data", [("relationship", "/id")], ["/meta/total"]).unwrap();
    assert_eq!(list.apply(&body, &keep).unwrap().removed, items - kept);
    let mut g = c.benchmark_group("permissions json list");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function(
        "guise, JsonList::apply deciding on values found by id",
        |b| b.iter(|| list.apply(black_box(&body), &keep).unwrap()),
    );
    g.bench_function("guise, serde_json parse + decide per item", |b| {
        b.iter(|| decide_list(&policy, &facts, black_box(&body)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
