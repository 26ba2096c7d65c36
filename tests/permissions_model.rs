//! Data permissions (issue 13) against the seed's scenarios, and against
//! two independent models:
//!
//! - Cedar (`cedar-policy`): generated policies are translated into Cedar
//!   policies and entities, and both must decide alike, union over rules
//!   and inheritance through relations included. Cedar cannot compare
//!   strings by order nor build a `like` pattern from a principal's
//!   attribute, so those cases are generated only for the second model.
//! - A hand-written interpreter of the spec ([`model`]), written from the
//!   issue's semantics without the compiled policy, over every operator,
//!   and telling "denied" from "a lookup failed" (fail closed).
//!
//! Only the public API is used: `guise::permissions`' re-exports.

use std::collections::HashMap;

use guise::permissions::{
    Action, Decision, Grant, Lookups, NoLookups, Policy, PolicySpec, Related, SpecError,
};
use guise::users::{Role, User};

// === fixtures ===

/// The seed's example (Account 100): relationship types with a Name,
/// relationships typed by one, CTAs linked to both. Relationship types are
/// named by their Name, so a relationship judges its type from the key
/// alone; a CTA's relationship needs a lookup.
const SEED: &str = r#"
user_attributes: [Business Unit]
groups:
  - name: UseGroupforBU1
    criteria:
      - {attribute: Business Unit, operator: "=", value: BU1}
resources:
  - name: relationship_type
    attributes:
      - {name: Name, field: /name}
    everyone: false
    rules: []
  - name: relationship
    attributes:
      - {name: Id, field: /id}
      - {name: Account, field: /account_id}
      - {name: Type, field: /type}
    relations:
      - {resource: relationship_type, via: Type}
    rules: []
  - name: cta
    attributes:
      - {name: Id, field: /id}
      - {name: Relationship, field: /relationship_id}
      - {name: Type, field: /relationship_type}
      - {name: Owner, field: /owner/email}
    relations:
      - {resource: relationship, via: Relationship}
      - {resource: relationship_type, via: Type}
    everyone: false
"#;

fn seed() -> PolicySpec {
    serde_saphyr::from_str(SEED).expect("the seed policy parses")
}

fn compile(spec: PolicySpec) -> Policy {
    Policy::compile(spec, 1).expect("the policy checks")
}

fn resource<'a>(spec: &'a mut PolicySpec, name: &str) -> &'a mut guise::permissions::ResourceSpec {
    spec.resources
        .iter_mut()
        .find(|r| r.name == name)
        .expect("a resource of the seed")
}

fn rule(yaml: &str) -> guise::permissions::RuleSpec {
    serde_saphyr::from_str(yaml).expect("the rule parses")
}

fn user(id: &str, bu: Option<&str>) -> User {
    let mut u = User::new(id, format!("User {id}"), format!("{id}@example.test"));
    if let Some(bu) = bu {
        u.attributes.insert("Business Unit".into(), bu.into());
    }
    u
}

/// Product A's relationship type, as its one attribute.
const PRODUCT_A: &[Option<&str>] = &[Some("Product A")];
const PRODUCT_B: &[Option<&str>] = &[Some("Product B")];

/// A relationship of Account 100, typed `kind`.
fn relationship(kind: &str) -> [Option<&str>; 3] {
    [Some("rel-1"), Some("100"), Some(kind)]
}

/// Related records by (resource, key), as the request's lookups found them.
#[derive(Default)]
struct Found(HashMap<(usize, String), Related>);

impl Found {
    fn with(mut self, resource: usize, key: &str, related: Related) -> Found {
        self.0.insert((resource, key.to_string()), related);
        self
    }
}

impl Lookups for Found {
    fn related(&self, resource: usize, key: &str) -> Related {
        self.0
            .get(&(resource, key.to_string()))
            .cloned()
            .unwrap_or(Related::Missing)
    }
}

fn decide(p: &Policy, u: &User, res: &str, action: Action, record: &[Option<&str>]) -> Decision {
    let facts = p.facts(u);
    p.decide(&facts, p.resource(res).unwrap(), action, record, &NoLookups)
}

fn reads(p: &Policy, u: &User, res: &str, record: &[Option<&str>]) -> bool {
    decide(p, u, res, Action::Read, record).allowed()
}

fn writes(p: &Policy, u: &User, res: &str, record: &[Option<&str>]) -> bool {
    decide(p, u, res, Action::Write, record).allowed()
}

const BU1_PRODUCT_A: &str = r#"
name: Business Unit Permission 1
action: read
criteria: [{attribute: Business Unit, operator: "=", value: BU1}]
advice: [{field: Name, operator: "=", value: Product A}]
"#;

// === the seed's scenarios ===

#[test]
fn with_no_rules_everyone_reads_and_writes_account_100s_relationships() {
    let p = compile(seed());
    let rel = p.resource("relationship").unwrap();
    for u in [
        user("u1", Some("BU1")),
        user("u2", Some("BU2")),
        user("u3", None),
    ] {
        let facts = p.facts(&u);
        for action in [Action::Read, Action::Write] {
            assert_eq!(
                p.decide(&facts, rel, action, &relationship("Product A"), &NoLookups),
                Decision::Allowed(Grant::Everyone { resource: rel })
            );
        }
    }
    assert!(!p.restricts(rel));
}

#[test]
fn with_everyone_off_and_no_rule_nobody_reads_account_100s_relationships() {
    let mut spec = seed();
    resource(&mut spec, "relationship").everyone = Some(false);
    let p = compile(spec);
    for u in [user("u1", Some("BU1")), user("u2", Some("BU2"))] {
        assert_eq!(
            decide(
                &p,
                &u,
                "relationship",
                Action::Read,
                &relationship("Product A")
            ),
            Decision::Denied
        );
        assert!(!reads(&p, &u, "relationship_type", PRODUCT_A));
    }
    assert!(p.restricts(p.resource("relationship").unwrap()));
}

#[test]
fn only_bu1_users_see_the_product_a_relationship_type() {
    let mut spec = seed();
    resource(&mut spec, "relationship_type")
        .rules
        .push(rule(BU1_PRODUCT_A));
    resource(&mut spec, "relationship").everyone = Some(false);
    let p = compile(spec);
    let (bu1, bu2, none) = (
        user("u1", Some("BU1")),
        user("u2", Some("BU2")),
        user("u3", None),
    );
    assert!(reads(&p, &bu1, "relationship_type", PRODUCT_A));
    assert!(!reads(&p, &bu1, "relationship_type", PRODUCT_B));
    assert!(!reads(&p, &bu2, "relationship_type", PRODUCT_A));
    assert!(!reads(&p, &none, "relationship_type", PRODUCT_A));
    // Case-sensitive by default: "product a" is another type.
    assert!(!reads(&p, &bu1, "relationship_type", &[Some("product a")]));
    // A user attribute is compared as written too.
    assert!(!reads(
        &p,
        &user("u4", Some("bu1")),
        "relationship_type",
        PRODUCT_A
    ));
    // The relationship inherits from its type, judged by the key alone.
    assert!(reads(&p, &bu1, "relationship", &relationship("Product A")));
    assert!(!reads(&p, &bu1, "relationship", &relationship("Product B")));
    assert!(!reads(&p, &bu2, "relationship", &relationship("Product A")));
    assert!(!reads(
        &p,
        &bu1,
        "relationship",
        &[Some("rel-1"), Some("100"), None]
    ));
    // A READ rule grants no WRITE.
    assert!(!writes(&p, &bu1, "relationship_type", PRODUCT_A));
    assert!(!writes(
        &p,
        &bu1,
        "relationship",
        &relationship("Product A")
    ));
}

#[test]
fn the_same_rule_through_the_sharing_group_use_group_for_bu1() {
    let mut spec = seed();
    resource(&mut spec, "relationship_type").rules.push(rule(
        r#"
name: Business Unit Permission
action: read
criteria: [{attribute: User Group, operator: in, values: [UseGroupforBU1]}]
advice: [{field: Name, operator: "=", value: Product A}]
"#,
    ));
    resource(&mut spec, "relationship").everyone = Some(false);
    // A user put in the group by hand is in it whatever their unit.
    spec.groups[0].members.push("u9".into());
    let p = compile(spec);
    let (bu1, bu2, by_hand) = (
        user("u1", Some("BU1")),
        user("u2", Some("BU2")),
        user("u9", Some("BU2")),
    );
    assert_eq!(p.facts(&bu1).groups, ["UseGroupforBU1"]);
    assert!(p.facts(&bu2).groups.is_empty());
    assert!(reads(&p, &bu1, "relationship_type", PRODUCT_A));
    assert!(!reads(&p, &bu1, "relationship_type", PRODUCT_B));
    assert!(!reads(&p, &bu2, "relationship_type", PRODUCT_A));
    assert!(reads(&p, &by_hand, "relationship_type", PRODUCT_A));
    assert!(reads(&p, &bu1, "relationship", &relationship("Product A")));
    assert!(!reads(&p, &bu2, "relationship", &relationship("Product A")));
    assert!(p.matches_group_criteria("UseGroupforBU1", &bu1));
    assert!(!p.matches_group_criteria("UseGroupforBU1", &by_hand));
    // The grant names the group, for explain.
    let facts = p.facts(&bu1);
    let rt = p.resource("relationship_type").unwrap();
    let Decision::Allowed(grant) = p.decide(&facts, rt, Action::Read, PRODUCT_A, &NoLookups) else {
        panic!("BU1 reads Product A");
    };
    let view = p.describe(grant);
    assert_eq!(view.by, "rule");
    assert_eq!(view.rule.as_deref(), Some("Business Unit Permission"));
    assert_eq!(view.groups, ["UseGroupforBU1"]);
}

#[test]
fn not_in_a_sharing_group_grants_to_everyone_outside_it() {
    let mut spec = seed();
    resource(&mut spec, "relationship_type").rules.push(rule(
        r#"
name: Outsiders
action: read
criteria: [{attribute: User Group, operator: not in, values: [UseGroupforBU1]}]
"#,
    ));
    let p = compile(spec);
    assert!(!reads(
        &p,
        &user("u1", Some("BU1")),
        "relationship_type",
        PRODUCT_A
    ));
    assert!(reads(
        &p,
        &user("u2", Some("BU2")),
        "relationship_type",
        PRODUCT_A
    ));
    assert!(reads(&p, &user("u3", None), "relationship_type", PRODUCT_B));
}

/// CTA rules: its own (owner), its relationship's (looked up) and its
/// relationship type's (by key), in a union.
fn cta_policy() -> (Policy, usize, usize) {
    let mut spec = seed();
    resource(&mut spec, "relationship_type")
        .rules
        .push(rule(BU1_PRODUCT_A));
    let r = resource(&mut spec, "relationship");
    r.everyone = Some(false);
    r.rules.push(rule(
        r#"
name: BU2 sees Account 100
action: write
criteria: [{attribute: Business Unit, operator: "=", value: BU2}]
advice: [{field: Account, operator: in, values: ["100", "101"]}]
"#,
    ));
    resource(&mut spec, "cta").rules.push(rule(
        r#"
name: Owners
action: write
advice: [{field: Owner, operator: "=", value: "${user.email}", case_sensitive: false}]
"#,
    ));
    let p = compile(spec);
    let (cta, rel) = (
        p.resource("cta").unwrap(),
        p.resource("relationship").unwrap(),
    );
    (p, cta, rel)
}

#[test]
fn a_cta_inherits_from_its_relationship_type_and_its_relationship() {
    let (p, cta, rel) = cta_policy();
    let found = |account: &str| {
        Found::default().with(
            rel,
            "rel-7",
            Related::Found(vec![
                Some("rel-7".into()),
                Some(account.into()),
                Some("Product B".into()),
            ]),
        )
    };
    let record = [
        Some("cta-1"),
        Some("rel-7"),
        Some("Product A"),
        Some("someone@example.test"),
    ];
    let (bu1, bu2, bu3) = (
        user("u1", Some("BU1")),
        user("u2", Some("BU2")),
        user("u3", Some("BU3")),
    );
    let d =
        |u: &User, action, lookups: &Found| p.decide(&p.facts(u), cta, action, &record, lookups);
    // BU1 through the relationship type (Product A), read only.
    let rt = p.resource("relationship_type").unwrap();
    assert_eq!(
        d(&bu1, Action::Read, &found("100")),
        Decision::Allowed(Grant::Rule {
            resource: rt,
            rule: 0
        })
    );
    assert_eq!(d(&bu1, Action::Write, &found("100")), Decision::Denied);
    // BU2 through the relationship (Account 100), read and write.
    assert_eq!(
        d(&bu2, Action::Write, &found("100")),
        Decision::Allowed(Grant::Rule {
            resource: rel,
            rule: 0
        })
    );
    assert!(d(&bu2, Action::Read, &found("100")).allowed());
    assert_eq!(d(&bu2, Action::Read, &found("200")), Decision::Denied);
    assert_eq!(d(&bu3, Action::Read, &found("100")), Decision::Denied);
    // A relationship the upstream does not have grants nothing; one it
    // could not be asked about refuses, with the resource.
    assert_eq!(d(&bu2, Action::Read, &Found::default()), Decision::Denied);
    let down = Found::default().with(rel, "rel-7", Related::Unavailable);
    assert_eq!(
        d(&bu2, Action::Read, &down),
        Decision::Unavailable { resource: rel }
    );
    // ...unless another relation grants it anyway.
    assert!(d(&bu1, Action::Read, &down).allowed());
}

#[test]
fn the_owner_rule_compares_with_the_users_own_email_case_blind() {
    let (p, cta, _) = cta_policy();
    let owner = User::new("u5", "Owner", "Owner@Example.test");
    let record = |email| [Some("cta-1"), None, None, Some(email)];
    let facts = p.facts(&owner);
    for email in [
        "owner@example.test",
        "OWNER@EXAMPLE.TEST",
        "Owner@Example.test",
    ] {
        for action in [Action::Read, Action::Write] {
            assert!(p
                .decide(&facts, cta, action, &record(email), &NoLookups)
                .allowed());
        }
    }
    assert!(!p
        .decide(
            &facts,
            cta,
            Action::Read,
            &record("other@example.test"),
            &NoLookups
        )
        .allowed());
    assert!(!p
        .decide(
            &facts,
            cta,
            Action::Read,
            &[Some("cta-1"), None, None, None],
            &NoLookups
        )
        .allowed());
}

#[test]
fn an_everyone_switch_on_the_cta_supersedes_the_others() {
    let mut spec = seed();
    resource(&mut spec, "cta").everyone = Some(true);
    let p = compile(spec);
    let cta = p.resource("cta").unwrap();
    assert_eq!(
        decide(
            &p,
            &user("u3", None),
            "cta",
            Action::Write,
            &[None, None, None, None]
        ),
        Decision::Allowed(Grant::Everyone { resource: cta })
    );
}

#[test]
fn write_implies_read() {
    let mut spec = seed();
    resource(&mut spec, "relationship_type").rules.push(rule(
        r#"
name: BU1 edits Product A
action: write
criteria: [{attribute: Business Unit, operator: "=", value: BU1}]
advice: [{field: Name, operator: "=", value: Product A}]
"#,
    ));
    let p = compile(spec);
    let bu1 = user("u1", Some("BU1"));
    assert!(writes(&p, &bu1, "relationship_type", PRODUCT_A));
    assert!(reads(&p, &bu1, "relationship_type", PRODUCT_A));
    assert!(!writes(&p, &bu1, "relationship_type", PRODUCT_B));
    assert!(!reads(
        &p,
        &user("u2", Some("BU2")),
        "relationship_type",
        PRODUCT_A
    ));
}

#[test]
fn super_admins_are_always_allowed() {
    let mut spec = seed();
    resource(&mut spec, "relationship").everyone = Some(false);
    let p = compile(spec);
    let mut admin = user("root", None);
    admin.roles = vec![Role::SuperAdmin];
    for res in ["relationship_type", "relationship", "cta"] {
        for action in [Action::Read, Action::Write] {
            assert_eq!(
                decide(&p, &admin, res, action, &[]),
                Decision::Allowed(Grant::SuperAdmin)
            );
        }
    }
    // An admin is not a super admin.
    let mut admin = user("adm", None);
    admin.roles = vec![Role::Admin];
    assert!(!reads(&p, &admin, "relationship_type", PRODUCT_A));
}

#[test]
fn case_blind_advice_matches_whatever_the_case() {
    let mut spec = seed();
    resource(&mut spec, "relationship_type").rules.push(rule(
        r#"
name: Products, case-blind
action: read
advice: [{field: Name, operator: in, values: [product a, "PRODUCT C"], case_sensitive: false}]
"#,
    ));
    resource(&mut spec, "relationship_type").rules.push(rule(
        r#"
name: Sparks, case-sensitive
action: read
advice: [{field: Name, operator: starts with, value: Spark}]
"#,
    ));
    let p = compile(spec);
    let u = user("u3", None);
    for name in [
        "Product A",
        "PRODUCT A",
        "product a",
        "Product c",
        "Spark",
        "Sparkle",
    ] {
        assert!(reads(&p, &u, "relationship_type", &[Some(name)]), "{name}");
    }
    for name in ["Product B", "product", "spark", "", " Product A"] {
        assert!(!reads(&p, &u, "relationship_type", &[Some(name)]), "{name}");
    }
    assert!(!reads(&p, &u, "relationship_type", &[None]));
}

#[test]
fn absent_values_fail_every_operator_but_the_negative_ones_and_is_empty() {
    let cases = [
        ("=", Some("x"), false),
        ("!=", Some("x"), true),
        ("in", Some("x"), false),
        ("not in", Some("x"), true),
        ("contains", Some("x"), false),
        ("starts with", Some("x"), false),
        ("<", Some("5"), false),
        ("<=", Some("5"), false),
        (">", Some("5"), false),
        (">=", Some("5"), false),
        ("is empty", None, true),
        ("is not empty", None, false),
    ];
    for (op, value, allowed) in cases {
        let mut spec = seed();
        let values = value.map_or(String::new(), |v| format!(", value: \"{v}\""));
        resource(&mut spec, "relationship_type")
            .rules
            .push(rule(&format!(
                "{{name: r, action: read, advice: [{{field: Name, operator: \"{op}\"{values}}}]}}"
            )));
        let p = compile(spec);
        assert_eq!(
            reads(&p, &user("u", None), "relationship_type", &[None]),
            allowed,
            "{op}"
        );
    }
}

#[test]
fn numbers_compare_as_numbers_and_dates_as_text() {
    let spec: PolicySpec = serde_saphyr::from_str(
        r#"
user_attributes: [Level]
resources:
  - name: deal
    attributes: [{name: Id, field: /id}, {name: Amount, field: /amount}, {name: Due, field: /due}]
    rules:
      - {name: small, action: read, advice: [{field: Amount, operator: "<", value: "10"}]}
      - {name: late, action: read, advice: [{field: Due, operator: ">=", value: "2026-01-01"}]}
"#,
    )
    .unwrap();
    let p = compile(spec);
    let u = user("u", None);
    assert!(reads(&p, &u, "deal", &[Some("d"), Some("9"), None]));
    assert!(!reads(&p, &u, "deal", &[Some("d"), Some("10"), None]));
    assert!(!reads(&p, &u, "deal", &[Some("d"), Some("100"), None]));
    assert!(reads(
        &p,
        &u,
        "deal",
        &[Some("d"), None, Some("2026-03-01")]
    ));
    assert!(!reads(
        &p,
        &u,
        "deal",
        &[Some("d"), None, Some("2025-12-31")]
    ));
}

// === PolicySpec::check names the field ===

fn check_error(yaml: &str) -> SpecError {
    let spec: PolicySpec = serde_saphyr::from_str(yaml).expect("the policy parses");
    let e = spec.check().expect_err("the policy is refused");
    assert_eq!(
        Policy::compile(spec, 1).expect_err("compile checks first"),
        e
    );
    e
}

const RT: &str = "
resources:
  - name: relationship_type
    attributes: [{name: Name, field: /name}]
    rules:
";

#[test]
fn check_names_a_bad_operator() {
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: like, value: x}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].operator");
    assert!(e.reason.contains("`like` is not an operator"), "{e}");
}

#[test]
fn check_names_an_unknown_user_attribute() {
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, criteria: [{{attribute: Business Unit, operator: '=', value: BU1}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].criteria[0].attribute");
    assert!(e.reason.contains("add it to user_attributes"), "{e}");
}

#[test]
fn check_names_an_advice_field_that_is_no_permission_attribute() {
    let e = check_error(&format!(
        "{RT}      - {{name: ok, action: read}}\n      - {{name: r, action: write, advice: [{{field: Owner, operator: '=', value: x}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[1].advice[0].attribute");
    assert!(
        e.reason.contains("`Owner` is not a permission attribute"),
        "{e}"
    );
}

#[test]
fn check_names_bad_values() {
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: '=', values: [a, '${{user.Region}}']}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].values[1]");
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: '=', value: '${{owner}}'}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].values[0]");
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: '<', values: ['1', '2']}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].values");
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: is empty, value: x}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].values");
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read, advice: [{{field: Name, operator: '='}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].advice[0].values");
    let e = check_error(&format!(
        "user_attributes: [BU]\n{RT}      - {{name: r, action: read, criteria: [{{attribute: BU, operator: '=', value: '${{user.BU}}'}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].criteria[0].values");
}

#[test]
fn check_names_group_mistakes() {
    let e = check_error("groups: [{name: Use Group 1}]");
    assert_eq!(e.field, "groups[0].name");
    assert!(e.reason.contains("letters and digits only"), "{e}");
    let e = check_error("groups: [{name: G1}, {name: G1}]");
    assert_eq!(e.field, "groups[1].name");
    let e = check_error(&format!(
        "groups: [{{name: G1}}]\n{RT}      - {{name: r, action: read, criteria: [{{attribute: User Group, operator: in, values: [G1, G2]}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].criteria[0].values[1]");
    let e = check_error(&format!(
        "groups: [{{name: G1}}]\n{RT}      - {{name: r, action: read, criteria: [{{attribute: User Group, operator: '=', value: G1}}]}}"
    ));
    assert_eq!(e.field, "resources[0].rules[0].criteria[0].operator");
    let e = check_error(
        "groups: [{name: G1}, {name: G2, criteria: [{attribute: User Group, operator: in, value: G1}]}]",
    );
    assert_eq!(e.field, "groups[1].criteria[0].attribute");
}

#[test]
fn check_names_resource_mistakes() {
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read}}\n    everyone: true"
    ));
    assert_eq!(e.field, "resources[0].everyone");
    let e = check_error(&format!(
        "{RT}      - {{name: r, action: read}}\n      - {{name: r, action: write}}"
    ));
    assert_eq!(e.field, "resources[0].rules[1].name");
    let e = check_error(
        "resources: [{name: a, attributes: [{name: x, field: /x}], relations: [{resource: b, via: x}]}, {name: b, attributes: [{name: y, field: /y}], relations: [{resource: a, via: y}]}]",
    );
    assert_eq!(e.field, "resources[0].relations");
    assert!(e.reason.contains("a -> b -> a"), "{e}");
    let e = check_error("resources: [{name: a, attributes: [{name: x, field: /x}], relations: [{resource: c, via: x}]}]");
    assert_eq!(e.field, "resources[0].relations[0].resource");
    let e = check_error("resources: [{name: a, attributes: [{name: x, field: x}]}]");
    assert_eq!(e.field, "resources[0].attributes[0].field");
    let e = check_error("resources: [{name: a, attributes: [{name: x, field: /x}], key: y}]");
    assert_eq!(e.field, "resources[0].key");
    let attributes: Vec<String> = (0..21)
        .map(|i| format!("{{name: a{i}, field: /a{i}}}"))
        .collect();
    let e = check_error(&format!(
        "resources: [{{name: a, attributes: [{}]}}]",
        attributes.join(", ")
    ));
    assert_eq!(e.field, "resources[0].attributes");
    let e = check_error("user_attributes: [email]");
    assert_eq!(e.field, "user_attributes[0]");
}

#[test]
fn unknown_fields_are_refused_when_reading() {
    let e = serde_saphyr::from_str::<PolicySpec>(&format!(
        "{RT}      - {{name: r, action: read, advise: []}}"
    ))
    .expect_err("`advise` is no field");
    assert!(e.to_string().contains("advise"), "{e}");
    assert!(serde_saphyr::from_str::<PolicySpec>(&format!(
        "{RT}      - {{name: r, action: delete}}"
    ))
    .is_err());
}

// === generated policies ===

mod generated {
    //! Policies, users, records and lookups from proptest strategies.
    //!
    //! Four resources `r0`..`r3`, each with the attributes `key`, `Name`,
    //! `Owner`, `Score` and `to1`..`to3`; `ri` may relate to `rj` (j > i,
    //! so there are no loops) through `toj`. Values come from small pools
    //! so that rules match often, in every case.

    use std::collections::HashMap;

    use guise::permissions::{
        Action, AdviceSpec, AttributeSpec, CriterionSpec, GroupSpec, PolicySpec, Related,
        RelationSpec, ResourceSpec, RuleSpec,
    };
    use guise::users::{Role, User};
    use proptest::prelude::*;
    use proptest::sample::{select, subsequence};

    pub const RESOURCES: usize = 4;
    pub const ATTRIBUTES: [&str; 7] = ["key", "Name", "Owner", "Score", "to1", "to2", "to3"];
    pub const USER_ATTRIBUTES: [&str; 3] = ["BU", "Region", "Level"];
    pub const GROUPS: [&str; 3] = ["G0", "G1", "G2"];
    pub const USER_IDS: [&str; 3] = ["u0", "u1", "u2"];

    const KEYS: [&str; 4] = ["k1", "k2", "K1", ""];
    const NAMES: [&str; 8] = [
        "Product A",
        "product a",
        "PRODUCT A",
        "Product B",
        "Prod",
        "",
        "École",
        "ÉCOLE",
    ];
    const EMAILS: [&str; 4] = ["a@x.test", "A@X.test", "b@x.test", ""];
    const BUS: [&str; 4] = ["BU1", "bu1", "BU2", ""];
    const REGIONS: [&str; 3] = ["EMEA", "US", "emea"];
    /// Text that orders differently from numbers, for the hand model only.
    const TEXTS: [&str; 5] = ["10", "9", "a", "B", "Product"];

    /// Everything one case decides on.
    #[derive(Debug, Clone)]
    pub struct Case {
        pub spec: PolicySpec,
        pub users: Vec<User>,
        pub resource: usize,
        pub record: Vec<Option<String>>,
        /// Related records by (resource, key); absent ones are missing.
        pub store: HashMap<(usize, String), Related>,
    }

    fn vals(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(select(pool).prop_map(String::from), 1..3)
    }

    fn int() -> impl Strategy<Value = String> {
        (-2i64..8).prop_map(|n| n.to_string())
    }

    fn cmp_op() -> impl Strategy<Value = &'static str> {
        select(&["<", "<=", ">", ">="][..])
    }

    /// Operators on text, with their values (none for the emptiness ones).
    fn text_test(pool: &'static [&'static str]) -> impl Strategy<Value = (String, Vec<String>)> {
        prop_oneof![
            (
                select(&["=", "!=", "in", "not in", "contains", "starts with"][..]),
                vals(pool)
            )
                .prop_map(|(op, v)| (op.to_string(), v)),
            select(&["is empty", "is not empty"][..]).prop_map(|op| (op.to_string(), vec![])),
        ]
    }

    fn criterion(groups: bool) -> BoxedStrategy<CriterionSpec> {
        let c = |attribute: &str, (operator, values): (String, Vec<String>)| CriterionSpec {
            attribute: attribute.into(),
            operator,
            values,
        };
        let mut s = prop_oneof![
            text_test(&BUS).prop_map(move |t| c("BU", t)),
            text_test(&REGIONS).prop_map(move |t| c("Region", t)),
            text_test(&EMAILS).prop_map(move |t| c("email", t)),
            (cmp_op(), int()).prop_map(move |(op, n)| c("Level", (op.into(), vec![n]))),
            (select(&["=", "!="][..]), int())
                .prop_map(move |(op, n)| c("Level", (op.into(), vec![n]))),
        ]
        .boxed();
        if groups {
            s = prop_oneof![
                3 => s,
                1 => (select(&["in", "not in"][..]), subsequence(&GROUPS[..], 1..3)).prop_map(
                    |(op, g)| CriterionSpec {
                        attribute: "User Group".into(),
                        operator: op.into(),
                        values: g.into_iter().map(String::from).collect(),
                    }
                ),
            ]
            .boxed();
        }
        s
    }

    /// `full`: also what Cedar cannot say (text ordering, `contains` and
    /// `starts with` against the user's own value).
    fn advice(full: bool) -> BoxedStrategy<AdviceSpec> {
        let a = |attribute: &str, (operator, values): (String, Vec<String>), cs: bool| AdviceSpec {
            attribute: attribute.into(),
            operator,
            values,
            case_sensitive: cs,
        };
        let user_ref = prop_oneof![
            select(&EMAILS[..]).prop_map(String::from),
            select(
                &[
                    "${user.email}",
                    "${user.BU}",
                    "${user.id}",
                    "${user.Region}"
                ][..]
            )
            .prop_map(String::from),
        ];
        let user_ops: &'static [&'static str] = if full {
            &["=", "!=", "in", "not in", "contains", "starts with"]
        } else {
            &["=", "!=", "in", "not in"]
        };
        let mut s = prop_oneof![
            (text_test(&NAMES), any::<bool>()).prop_map(move |(t, cs)| a("Name", t, cs)),
            (text_test(&KEYS), any::<bool>()).prop_map(move |(t, cs)| a("key", t, cs)),
            (
                select(user_ops),
                prop::collection::vec(user_ref, 1..3),
                any::<bool>()
            )
                .prop_map(move |(op, v, cs)| a("Owner", (op.into(), v), cs)),
            (cmp_op(), int(), any::<bool>()).prop_map(move |(op, n, cs)| a(
                "Score",
                (op.into(), vec![n]),
                cs
            )),
            (
                select(&["=", "!=", "in"][..]),
                prop::collection::vec(int(), 1..3)
            )
                .prop_map(move |(op, v)| a("Score", (op.into(), v), true)),
        ]
        .boxed();
        if full {
            s = prop_oneof![
                4 => s,
                1 => (cmp_op(), select(&TEXTS[..]), select(&["Name", "Score"][..]), any::<bool>())
                    .prop_map(move |(op, v, at, cs)| a(at, (op.into(), vec![v.into()]), cs)),
            ]
            .boxed();
        }
        s
    }

    fn rule(full: bool) -> impl Strategy<Value = (Action, Vec<CriterionSpec>, Vec<AdviceSpec>)> {
        (
            select(&[Action::Read, Action::Write][..]),
            prop::collection::vec(criterion(true), 0..3),
            prop::collection::vec(advice(full), 0..3),
        )
    }

    fn resource(
        i: usize,
        full: bool,
        rule_count: std::ops::Range<usize>,
    ) -> impl Strategy<Value = ResourceSpec> {
        let later: Vec<usize> = (i + 1..RESOURCES).collect();
        let n = later.len();
        (
            subsequence(later, 0..=n),
            prop_oneof![2 => Just(None), 3 => Just(Some(false)), 1 => Just(Some(true))],
            prop::collection::vec(rule(full), rule_count),
            any::<bool>(),
        )
            .prop_map(move |(relations, everyone, rules, explicit_key)| {
                let rules = if everyone == Some(true) {
                    Vec::new()
                } else {
                    rules
                        .into_iter()
                        .enumerate()
                        .map(|(k, (action, criteria, advice))| RuleSpec {
                            name: format!("r{i}.{k}"),
                            action,
                            criteria,
                            advice,
                        })
                        .collect()
                };
                ResourceSpec {
                    name: format!("r{i}"),
                    attributes: ATTRIBUTES
                        .iter()
                        .map(|a| AttributeSpec {
                            name: a.to_string(),
                            field: format!("/{a}"),
                            html: None,
                        })
                        .collect(),
                    key: explicit_key.then(|| "key".to_string()),
                    relations: relations
                        .into_iter()
                        .map(|j| RelationSpec {
                            resource: format!("r{j}"),
                            via: format!("to{j}"),
                        })
                        .collect(),
                    everyone,
                    rules,
                    lookup: None,
                    html: Vec::new(),
                }
            })
    }

    fn group(i: usize) -> impl Strategy<Value = GroupSpec> {
        (
            prop::collection::vec(criterion(false), 0..3),
            subsequence(&USER_IDS[..], 0..2),
        )
            .prop_map(move |(criteria, members)| GroupSpec {
                name: GROUPS[i].into(),
                criteria,
                members: members.into_iter().map(String::from).collect(),
            })
    }

    fn user(i: usize) -> impl Strategy<Value = User> {
        (
            select(&EMAILS[..]),
            prop::option::of(select(&BUS[..])),
            prop::option::of(select(&REGIONS[..])),
            prop::option::of(int()),
            prop::bool::weighted(0.1),
        )
            .prop_map(move |(email, bu, region, level, admin)| {
                let mut u = User::new(USER_IDS[i], format!("User {i}"), email);
                for (k, v) in [
                    ("BU", bu.map(String::from)),
                    ("Region", region.map(String::from)),
                    ("Level", level),
                ] {
                    if let Some(v) = v {
                        u.attributes.insert(k.into(), v);
                    }
                }
                if admin {
                    u.roles = vec![Role::SuperAdmin];
                }
                u
            })
    }

    /// Values of one record, in [`ATTRIBUTES`] order.
    fn record(full: bool) -> impl Strategy<Value = Vec<Option<String>>> {
        let score = if full {
            prop_oneof![int(), select(&TEXTS[..]).prop_map(String::from)].boxed()
        } else {
            int().boxed()
        };
        let key = || prop::option::of(select(&KEYS[..]).prop_map(String::from));
        (
            key(),
            prop::option::of(select(&NAMES[..]).prop_map(String::from)),
            prop::option::of(select(&EMAILS[..]).prop_map(String::from)),
            prop::option::of(score),
            key(),
            key(),
            key(),
        )
            .prop_map(|(k, n, o, s, t1, t2, t3)| vec![k, n, o, s, t1, t2, t3])
    }

    fn store(full: bool) -> impl Strategy<Value = HashMap<(usize, String), Related>> {
        let entry = prop_oneof![
            3 => record(full).prop_map(Some),
            1 => Just(None),
        ];
        let unavailable = prop::bool::weighted(0.1);
        prop::collection::vec((entry, unavailable), RESOURCES * 3).prop_map(|entries| {
            let mut store = HashMap::new();
            for (n, (entry, unavailable)) in entries.into_iter().enumerate() {
                let (resource, key) = (n / 3, KEYS[n % 3].to_string());
                let related = match (entry, unavailable) {
                    (_, true) => Related::Unavailable,
                    (None, false) => continue,
                    (Some(mut values), false) => {
                        values[0] = Some(key.clone());
                        Related::Found(values)
                    }
                };
                store.insert((resource, key), related);
            }
            store
        })
    }

    pub fn case(full: bool) -> impl Strategy<Value = Case> {
        case_with(full, 0..5)
    }

    /// As [`case`], with `rule_count` rules on each resource. Many rules
    /// over the small value pools file many rules under one value of the
    /// policy's rule index, several of them granting.
    pub fn case_with(
        full: bool,
        rule_count: std::ops::Range<usize>,
    ) -> impl Strategy<Value = Case> {
        let resources: Vec<_> = (0..RESOURCES)
            .map(|i| resource(i, full, rule_count.clone()))
            .collect();
        let groups: Vec<_> = (0..GROUPS.len()).map(group).collect();
        let users: Vec<_> = (0..USER_IDS.len()).map(user).collect();
        (
            resources,
            groups,
            users,
            0..RESOURCES,
            record(full),
            store(full),
        )
            .prop_map(|(resources, groups, users, resource, record, store)| Case {
                spec: PolicySpec {
                    user_attributes: USER_ATTRIBUTES.iter().map(|s| s.to_string()).collect(),
                    resources,
                    groups,
                },
                users,
                resource,
                record,
                store,
            })
    }
}

/// The request's lookups over a generated store: what it lacks is missing.
struct Store<'a>(&'a HashMap<(usize, String), Related>);

impl Lookups for Store<'_> {
    fn related(&self, resource: usize, key: &str) -> Related {
        self.0
            .get(&(resource, key.to_string()))
            .cloned()
            .unwrap_or(Related::Missing)
    }
}

fn refs(values: &[Option<String>]) -> Vec<Option<&str>> {
    values.iter().map(|v| v.as_deref()).collect()
}

/// The key name of a resource as written: `key`, else the first attribute.
fn key_name(r: &guise::permissions::ResourceSpec) -> &str {
    r.key
        .as_deref()
        .unwrap_or_else(|| r.attributes.first().map_or("", |a| a.name.as_str()))
}

/// Whether a resource's everyone switch is on, as the issue puts it: on
/// by default when it has no rules.
fn everyone(r: &guise::permissions::ResourceSpec) -> bool {
    r.everyone.unwrap_or(r.rules.is_empty())
}

/// Whether the evaluator judges a related record of `r` by its key alone
/// (a documented design choice, so both models follow it): everyone on,
/// or nothing but the key in its advice and relations.
fn judged_by_key(r: &guise::permissions::ResourceSpec) -> bool {
    let key = key_name(r);
    everyone(r)
        || (r
            .rules
            .iter()
            .flat_map(|rule| rule.advice.iter().map(|a| a.attribute.as_str()))
            .chain(r.relations.iter().map(|rel| rel.via.as_str()))
            .all(|a| a == key))
}

/// A related record as the evaluator sees it: synthesised from the key,
/// or looked up (`Err`: missing or unavailable).
fn related_record(
    spec: &PolicySpec,
    store: &HashMap<(usize, String), Related>,
    target: usize,
    key: &str,
) -> Result<Vec<Option<String>>, Related> {
    let t = &spec.resources[target];
    if judged_by_key(t) {
        let mut values = vec![None; t.attributes.len()];
        let k = t
            .attributes
            .iter()
            .position(|a| a.name == key_name(t))
            .unwrap();
        values[k] = Some(key.to_string());
        return Ok(values);
    }
    match store.get(&(target, key.to_string())) {
        Some(Related::Found(values)) => Ok(values.clone()),
        Some(Related::Unavailable) => Err(Related::Unavailable),
        _ => Err(Related::Missing),
    }
}

mod model {
    //! A second, hand-written model: the issue's semantics interpreted
    //! straight from the spec, with its own operators. It covers what
    //! Cedar cannot say, and tells a failed lookup from a denial.

    use std::cmp::Ordering;
    use std::collections::HashMap;

    use guise::permissions::{Action, CriterionSpec, PolicySpec, Related};
    use guise::users::{Role, User};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Verdict {
        Allowed,
        Denied,
        Unavailable,
    }

    fn user_value<'a>(u: &'a User, name: &str) -> Option<&'a str> {
        match name {
            "id" => Some(&u.id),
            "email" => Some(&u.email),
            "name" => Some(&u.name),
            _ => u.attributes.get(name).map(String::as_str),
        }
    }

    fn order(a: &str, b: &str) -> Ordering {
        let num = |s: &str| s.trim().parse::<f64>().ok().filter(|x| x.is_finite());
        match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap(),
            _ => a.cmp(b),
        }
    }

    /// One operator on one (maybe absent) value against several.
    pub fn test(op: &str, have: Option<&str>, values: &[String], case_sensitive: bool) -> bool {
        let norm = |s: &str| {
            if case_sensitive {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let have = have.map(norm);
        let values: Vec<String> = values.iter().map(|v| norm(v)).collect();
        let any = |f: &dyn Fn(&str, &str) -> bool| match &have {
            None => false,
            Some(h) => values.iter().any(|v| f(h, v)),
        };
        match op {
            "is empty" => have.as_deref().unwrap_or("").is_empty(),
            "is not empty" => !have.as_deref().unwrap_or("").is_empty(),
            _ if values.is_empty() => false,
            "=" | "in" => any(&|h, v| h == v),
            "!=" | "not in" => !any(&|h, v| h == v),
            "contains" => any(&|h, v| h.contains(v)),
            "starts with" => any(&|h, v| h.starts_with(v)),
            "<" => any(&|h, v| order(h, v).is_lt()),
            "<=" => any(&|h, v| order(h, v).is_le()),
            ">" => any(&|h, v| order(h, v).is_gt()),
            ">=" => any(&|h, v| order(h, v).is_ge()),
            _ => panic!("generated operator {op}"),
        }
    }

    fn criterion(c: &CriterionSpec, u: &User, groups: &[&str]) -> bool {
        if c.attribute == "User Group" {
            let member = c.values.iter().any(|g| groups.contains(&g.as_str()));
            return if c.operator == "not in" {
                !member
            } else {
                member
            };
        }
        test(&c.operator, user_value(u, &c.attribute), &c.values, true)
    }

    pub fn groups<'a>(spec: &'a PolicySpec, u: &User) -> Vec<&'a str> {
        spec.groups
            .iter()
            .filter(|g| {
                g.members.contains(&u.id)
                    || (!g.criteria.is_empty() && g.criteria.iter().all(|c| criterion(c, u, &[])))
            })
            .map(|g| g.name.as_str())
            .collect()
    }

    pub fn decide(
        spec: &PolicySpec,
        store: &HashMap<(usize, String), Related>,
        u: &User,
        resource: usize,
        action: Action,
        record: &[Option<String>],
    ) -> Verdict {
        if u.roles.contains(&Role::SuperAdmin) {
            return Verdict::Allowed;
        }
        let groups = groups(spec, u);
        decide_at(spec, store, u, &groups, resource, action, record)
    }

    /// The first of `resource`'s own rules (by its place in the spec) that
    /// grants `action` on `record` to `u`, relations aside.
    pub fn first_grant(
        spec: &PolicySpec,
        u: &User,
        resource: usize,
        action: Action,
        record: &[Option<String>],
    ) -> Option<usize> {
        rules_grant(spec, u, &groups(spec, u), resource, action, record)
    }

    fn rules_grant(
        spec: &PolicySpec,
        u: &User,
        groups: &[&str],
        resource: usize,
        action: Action,
        record: &[Option<String>],
    ) -> Option<usize> {
        let r = &spec.resources[resource];
        let value = |name: &str| {
            let i = r.attributes.iter().position(|a| a.name == name).unwrap();
            record[i].as_deref()
        };
        r.rules.iter().position(|rule| {
            let grants = rule.action == Action::Write || action == Action::Read;
            let who = rule.criteria.iter().all(|c| criterion(c, u, groups));
            let what = rule.advice.iter().all(|a| {
                let values: Vec<String> = a
                    .values
                    .iter()
                    .filter_map(|v| match v.strip_prefix("${user.") {
                        Some(name) => user_value(u, name.trim_end_matches('}')).map(String::from),
                        None => Some(v.clone()),
                    })
                    .collect();
                test(&a.operator, value(&a.attribute), &values, a.case_sensitive)
            });
            grants && who && what
        })
    }

    fn decide_at(
        spec: &PolicySpec,
        store: &HashMap<(usize, String), Related>,
        u: &User,
        groups: &[&str],
        resource: usize,
        action: Action,
        record: &[Option<String>],
    ) -> Verdict {
        let r = &spec.resources[resource];
        if super::everyone(r) {
            return Verdict::Allowed;
        }
        let value = |name: &str| {
            let i = r.attributes.iter().position(|a| a.name == name).unwrap();
            record[i].as_deref()
        };
        if rules_grant(spec, u, groups, resource, action, record).is_some() {
            return Verdict::Allowed;
        }
        let mut verdict = Verdict::Denied;
        for rel in &r.relations {
            let Some(key) = value(&rel.via).filter(|k| !k.is_empty()) else {
                continue;
            };
            let target = spec
                .resources
                .iter()
                .position(|t| t.name == rel.resource)
                .unwrap();
            match super::related_record(spec, store, target, key) {
                Ok(values) => match decide_at(spec, store, u, groups, target, action, &values) {
                    Verdict::Allowed => return Verdict::Allowed,
                    Verdict::Unavailable => verdict = Verdict::Unavailable,
                    Verdict::Denied => {}
                },
                Err(Related::Unavailable) => verdict = Verdict::Unavailable,
                Err(_) => {}
            }
        }
        verdict
    }
}

mod cedar {
    //! The generated policy as Cedar policies and entities.
    //!
    //! Each resource `ri` is an entity type `Ri`; the record decided on is
    //! `Ri::"__record"` and a related record `Rj::"<key>"`, reached through
    //! the record's attribute `toj` (an entity reference, set only when
    //! the related record exists). Every rule of a resource reachable by a
    //! path of relations becomes a `permit` on the resource at the path's
    //! start, its advice tested on `resource.toj.…`. Strings carry a
    //! lower-cased twin (`Name__f`) for case-blind advice, since Cedar has
    //! no case folding, and numbers a Long twin (`Score__n`). Group
    //! membership is written inline: `principal in Group::"G"` (members by
    //! hand, as entity parents) or the group's criteria.

    use std::collections::{HashMap, HashSet};

    use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
    use guise::permissions::{Action, CriterionSpec, PolicySpec, Related};
    use guise::users::{Role, User};
    use serde_json::{json, Map, Value};

    use super::generated::ATTRIBUTES;

    fn q(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A `like` pattern: `*` around the escaped text as `wild` says.
    fn pattern(s: &str, before: bool) -> String {
        assert!(!s.contains(['*', '"', '\\']), "pool values stay plain");
        format!("\"{}{s}*\"", if before { "*" } else { "" })
    }

    /// `obj.attr` tested with `op` against `values` (`${user.X}` refers to
    /// the principal's `X`).
    fn test(obj: &str, attr: &str, op: &str, values: &[String], cs: bool) -> String {
        let f = if cs { "" } else { "__f" };
        let fold = |s: &str| if cs { s.to_string() } else { s.to_lowercase() };
        let mut lits = Vec::new();
        let mut users = Vec::new();
        for v in values {
            match v.strip_prefix("${user.") {
                Some(name) => users.push(name.trim_end_matches('}').to_string()),
                None => lits.push(fold(v)),
            }
        }
        let has = format!("{obj} has {attr}");
        let a = format!("{obj}.{attr}{f}");
        let or = |terms: Vec<String>| {
            if terms.is_empty() {
                "false".to_string()
            } else {
                format!("({})", terms.join(" || "))
            }
        };
        let eq_any = or(lits
            .iter()
            .map(|l| format!("{a} == {}", q(l)))
            .chain(
                users
                    .iter()
                    .map(|u| format!("(principal has {u} && {a} == principal.{u}{f})")),
            )
            .collect());
        let some_value = if lits.is_empty() {
            or(users.iter().map(|u| format!("principal has {u}")).collect())
        } else {
            "true".into()
        };
        match op {
            "=" | "in" => format!("({has} && {eq_any})"),
            "!=" | "not in" => format!("({some_value} && !({has} && {eq_any}))"),
            "contains" | "starts with" => {
                assert!(users.is_empty(), "Cedar has no pattern from an attribute");
                let terms = lits
                    .iter()
                    .map(|l| format!("{a} like {}", pattern(l, op == "contains")))
                    .collect();
                format!("({has} && {})", or(terms))
            }
            "<" | "<=" | ">" | ">=" => {
                let n: i64 = lits[0].parse().expect("Cedar compares numbers only");
                format!("({obj} has {attr}__n && {obj}.{attr}__n {op} {n})")
            }
            "is empty" => format!("(!({has}) || {obj}.{attr} == \"\")"),
            "is not empty" => format!("({has} && {obj}.{attr} != \"\")"),
            _ => panic!("generated operator {op}"),
        }
    }

    fn criterion(spec: &PolicySpec, c: &CriterionSpec) -> String {
        if c.attribute != "User Group" {
            return test("principal", &c.attribute, &c.operator, &c.values, true);
        }
        let member = c
            .values
            .iter()
            .map(|name| {
                let g = spec.groups.iter().find(|g| &g.name == name).unwrap();
                let mut m = format!("principal in Group::{}", q(name));
                if !g.criteria.is_empty() {
                    let all: Vec<String> = g.criteria.iter().map(|c| criterion(spec, c)).collect();
                    m = format!("{m} || ({})", all.join(" && "));
                }
                format!("({m})")
            })
            .collect::<Vec<_>>()
            .join(" || ");
        if c.operator == "not in" {
            format!("!({member})")
        } else {
            format!("({member})")
        }
    }

    /// Relation paths from resource `from`: (the `resource.…` expression,
    /// its guards, the resource at its end).
    fn paths(spec: &PolicySpec, from: usize) -> Vec<(String, Vec<String>, usize)> {
        let mut out = vec![("resource".to_string(), Vec::new(), from)];
        let mut i = 0;
        while i < out.len() {
            let (expr, guards, at) = out[i].clone();
            for rel in &spec.resources[at].relations {
                let to = spec
                    .resources
                    .iter()
                    .position(|r| r.name == rel.resource)
                    .unwrap();
                let mut g = guards.clone();
                g.push(format!("{expr} has {}", rel.via));
                out.push((format!("{expr}.{}", rel.via), g, to));
            }
            i += 1;
        }
        out
    }

    fn type_of(spec: &PolicySpec, i: usize) -> String {
        spec.resources[i].name.to_uppercase()
    }

    pub fn policies(spec: &PolicySpec) -> String {
        let mut out =
            String::from("permit(principal, action, resource) when { principal.super_admin };\n");
        for from in 0..spec.resources.len() {
            let ty = type_of(spec, from);
            for (expr, guards, at) in paths(spec, from) {
                let r = &spec.resources[at];
                if super::everyone(r) {
                    let when = if guards.is_empty() {
                        "true".to_string()
                    } else {
                        guards.join(" && ")
                    };
                    out += &format!(
                        "permit(principal, action, resource is {ty}) when {{ {when} }};\n"
                    );
                    continue;
                }
                for rule in &r.rules {
                    let actions = match rule.action {
                        Action::Read => "action == Action::\"read\"",
                        Action::Write => "action in [Action::\"read\", Action::\"write\"]",
                    };
                    let mut conds = guards.clone();
                    conds.extend(rule.criteria.iter().map(|c| criterion(spec, c)));
                    conds.extend(rule.advice.iter().map(|a| {
                        test(
                            &expr,
                            &a.attribute,
                            &a.operator,
                            &a.values,
                            a.case_sensitive,
                        )
                    }));
                    if conds.is_empty() {
                        conds.push("true".into());
                    }
                    out += &format!(
                        "// {}\npermit(principal, {actions}, resource is {ty}) when {{ {} }};\n",
                        rule.name,
                        conds.join(" && ")
                    );
                }
            }
        }
        out
    }

    fn string_attrs(attrs: &mut Map<String, Value>, name: &str, v: &str) {
        attrs.insert(name.into(), json!(v));
        attrs.insert(format!("{name}__f"), json!(v.to_lowercase()));
        if let Ok(n) = v.parse::<i64>() {
            attrs.insert(format!("{name}__n"), json!(n));
        }
    }

    struct Builder<'a> {
        spec: &'a PolicySpec,
        store: &'a HashMap<(usize, String), Related>,
        seen: HashSet<(usize, String)>,
        out: Vec<Value>,
    }

    impl Builder<'_> {
        /// Adds the record `id` of resource `at` and whatever it relates
        /// to; false when the related record is not there.
        fn record(&mut self, at: usize, id: &str, values: &[Option<String>]) {
            if !self.seen.insert((at, id.to_string())) {
                return;
            }
            let r = &self.spec.resources[at];
            let mut attrs = Map::new();
            for (a, v) in r.attributes.iter().zip(values) {
                if let (Some(v), false) = (v, a.name.starts_with("to")) {
                    string_attrs(&mut attrs, &a.name, v);
                }
            }
            for rel in &r.relations {
                let i = r.attributes.iter().position(|a| a.name == rel.via).unwrap();
                let Some(key) = values[i].as_deref().filter(|k| !k.is_empty()) else {
                    continue;
                };
                let to = self
                    .spec
                    .resources
                    .iter()
                    .position(|t| t.name == rel.resource)
                    .unwrap();
                if let Ok(related) = super::related_record(self.spec, self.store, to, key) {
                    self.record(to, key, &related);
                    attrs.insert(
                        rel.via.clone(),
                        json!({"__entity": {"type": type_of(self.spec, to), "id": key}}),
                    );
                }
            }
            self.out.push(json!({
                "uid": {"type": type_of(self.spec, at), "id": id},
                "attrs": attrs,
                "parents": [],
            }));
        }
    }

    pub struct World {
        pub policies: String,
        set: PolicySet,
        entities: Entities,
        ty: String,
    }

    impl World {
        pub fn new(
            spec: &PolicySpec,
            users: &[User],
            resource: usize,
            record: &[Option<String>],
            store: &HashMap<(usize, String), Related>,
        ) -> World {
            assert_eq!(record.len(), ATTRIBUTES.len());
            let policies = policies(spec);
            let set: PolicySet = policies
                .parse()
                .unwrap_or_else(|e| panic!("Cedar refuses the translation: {e:?}\n{policies}"));
            let mut b = Builder {
                spec,
                store,
                seen: HashSet::new(),
                out: Vec::new(),
            };
            b.record(resource, "__record", record);
            for u in users {
                let mut attrs = Map::new();
                attrs.insert(
                    "super_admin".into(),
                    json!(u.roles.contains(&Role::SuperAdmin)),
                );
                string_attrs(&mut attrs, "id", &u.id);
                string_attrs(&mut attrs, "email", &u.email);
                string_attrs(&mut attrs, "name", &u.name);
                for (k, v) in &u.attributes {
                    string_attrs(&mut attrs, k, v);
                }
                let parents: Vec<Value> = spec
                    .groups
                    .iter()
                    .filter(|g| g.members.contains(&u.id))
                    .map(|g| json!({"type": "Group", "id": g.name}))
                    .collect();
                b.out.push(json!({
                    "uid": {"type": "User", "id": u.id},
                    "attrs": attrs,
                    "parents": parents,
                }));
            }
            for g in &spec.groups {
                b.out.push(
                    json!({"uid": {"type": "Group", "id": g.name}, "attrs": {}, "parents": []}),
                );
            }
            let entities = Entities::from_json_value(Value::Array(b.out), None)
                .unwrap_or_else(|e| panic!("Cedar refuses the entities: {e:?}"));
            World {
                policies,
                set,
                entities,
                ty: type_of(spec, resource),
            }
        }

        pub fn allowed(&self, user: &str, action: Action) -> bool {
            let uid = |ty: &str, id: &str| -> EntityUid {
                format!("{ty}::{}", q(id)).parse().expect("an entity uid")
            };
            let request = Request::new(
                uid("User", user),
                uid("Action", action.as_str()),
                uid(&self.ty, "__record"),
                Context::empty(),
                None,
            )
            .expect("a request without a schema");
            let answer = Authorizer::new().is_authorized(&request, &self.set, &self.entities);
            let errors: Vec<String> = answer
                .diagnostics()
                .errors()
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "Cedar errors: {errors:?}\n{}",
                self.policies
            );
            answer.decision() == cedar_policy::Decision::Allow
        }
    }
}

mod properties {
    use proptest::prelude::*;

    use super::generated::{case, case_with, Case};
    use super::model::{self, Verdict};
    use super::*;

    /// guise decides every user and action on `case` as the hand model
    /// does, down to a failed lookup against a denial.
    fn decides_as_the_hand_model(case: &Case) -> Result<(), TestCaseError> {
        let policy = Policy::compile(case.spec.clone(), 1).expect("generated policies check");
        let record = refs(&case.record);
        for u in &case.users {
            let facts = policy.facts(u);
            let mut groups = model::groups(&case.spec, u);
            groups.sort_unstable();
            let mut theirs: Vec<&str> = facts.groups.iter().map(String::as_str).collect();
            theirs.sort_unstable();
            prop_assert_eq!(theirs, groups);
            for action in [Action::Read, Action::Write] {
                let guise =
                    policy.decide(&facts, case.resource, action, &record, &Store(&case.store));
                let expected = model::decide(
                    &case.spec,
                    &case.store,
                    u,
                    case.resource,
                    action,
                    &case.record,
                );
                let got = match guise {
                    Decision::Allowed(_) => Verdict::Allowed,
                    Decision::Denied => Verdict::Denied,
                    Decision::Unavailable { .. } => Verdict::Unavailable,
                };
                prop_assert_eq!(
                    got,
                    expected,
                    "user {:?} {:?} on r{} {:?}: guise {:?}\n{:#?}",
                    u,
                    action,
                    case.resource,
                    case.record,
                    guise,
                    case.spec.resources
                );
                // A grant on the record itself names its first granting
                // rule (one through a relation is judged above).
                if let Decision::Allowed(Grant::Rule { resource, rule }) = guise {
                    if resource == case.resource {
                        prop_assert_eq!(
                            Some(rule as usize),
                            model::first_grant(&case.spec, u, resource, action, &case.record),
                            "the grant names the first granting rule"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// guise and Cedar agree on every generated user, action and
        /// record, through rules, groups, relations and Everyone switches.
        #[test]
        fn the_evaluator_decides_as_cedar(case in case(false)) {
            let policy = Policy::compile(case.spec.clone(), 1).expect("generated policies check");
            let world = cedar::World::new(&case.spec, &case.users, case.resource, &case.record, &case.store);
            let record = refs(&case.record);
            for u in &case.users {
                let facts = policy.facts(u);
                for action in [Action::Read, Action::Write] {
                    let guise = policy.decide(&facts, case.resource, action, &record, &Store(&case.store));
                    let cedar = world.allowed(&u.id, action);
                    prop_assert_eq!(
                        guise.allowed(), cedar,
                        "user {:?} {:?} on r{} {:?}: guise {:?}\n{}",
                        u, action, case.resource, case.record, guise, world.policies
                    );
                }
            }
        }

        /// guise and the hand model agree on every operator, and on
        /// telling a failed lookup from a denial.
        #[test]
        fn the_evaluator_decides_as_the_hand_model(case in case(true)) {
            decides_as_the_hand_model(&case)?;
        }

        /// The same over resources of many rules, where the policy's rule
        /// index files several rules under one value and runs the rest
        /// in between: same decisions, and the same granting rule.
        #[test]
        fn the_rule_index_decides_as_the_hand_model(case in case_with(true, 6..40)) {
            decides_as_the_hand_model(&case)?;
        }

        /// A rule granted for READ never grants WRITE, and a WRITE grant
        /// always comes with READ.
        #[test]
        fn write_implies_read_everywhere(case in case(true)) {
            let policy = Policy::compile(case.spec.clone(), 1).expect("generated policies check");
            let record = refs(&case.record);
            for u in &case.users {
                let facts = policy.facts(u);
                let w = policy.decide(&facts, case.resource, Action::Write, &record, &Store(&case.store));
                let r = policy.decide(&facts, case.resource, Action::Read, &record, &Store(&case.store));
                prop_assert!(!w.allowed() || r.allowed(), "WRITE {:?} but READ {:?}", w, r);
            }
        }
    }

    #[test]
    fn the_models_agree_on_the_seed() {
        // The example tests' policy, through the hand model: keeps the
        // model honest on hand-checked answers.
        let mut spec = seed();
        resource(&mut spec, "relationship_type")
            .rules
            .push(rule(BU1_PRODUCT_A));
        let store = HashMap::new();
        let rt = 0;
        let bu1 = user("u1", Some("BU1"));
        let bu2 = user("u2", Some("BU2"));
        let a = [Some("Product A".to_string())];
        assert_eq!(
            model::decide(&spec, &store, &bu1, rt, Action::Read, &a),
            Verdict::Allowed
        );
        assert_eq!(
            model::decide(&spec, &store, &bu2, rt, Action::Read, &a),
            Verdict::Denied
        );
        assert_eq!(
            model::decide(&spec, &store, &bu1, rt, Action::Write, &a),
            Verdict::Denied
        );
    }
}

// === the fuzz target's seeds ===

#[path = "../fuzz/fuzz_targets/permissions_check.rs"]
mod permissions_check;

/// Replays `fuzz/seeds/permissions/` through the fuzz target's check, on
/// stable; the seeds named `seed*` and `chain*` must also compile.
#[test]
fn the_fuzz_seeds_pass_the_fuzz_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/permissions");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seeds directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        permissions_check::check(&data);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("seed") || name.starts_with("chain") {
            let text = String::from_utf8(data).unwrap();
            let policy = text.split("\n#---").next().unwrap();
            let spec: PolicySpec = serde_json::from_str(policy)
                .or_else(|_| serde_saphyr::from_str(policy).map_err(|e| e.to_string()))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            Policy::compile(spec, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        n += 1;
    }
    assert!(n >= 5, "{n} seeds");
}

// === found while writing these tests ===

/// `UserFacts` hold rule numbers of the policy that made them; deciding
/// with facts of an older policy (a cache raced by a reload) indexed the
/// new policy's rules with them and panicked. Now such facts are never
/// used: the decision is a denial.
#[test]
fn facts_of_an_older_policy_are_never_used() {
    let two = r#"
resources:
  - name: a
    attributes: [{name: x, field: /x}]
    rules:
      - {name: one, action: read, advice: [{field: x, operator: "=", value: "1"}]}
      - {name: two, action: read, advice: [{field: x, operator: "=", value: "2"}]}
"#;
    let old = Policy::compile(serde_saphyr::from_str(two).unwrap(), 1).unwrap();
    let mut spec: PolicySpec = serde_saphyr::from_str(two).unwrap();
    spec.resources[0].rules.pop();
    let new = Policy::compile(spec, 2).unwrap();
    let stale = old.facts(&user("u", None));
    let d = new.decide(&stale, 0, Action::Read, &[Some("2")], &NoLookups);
    assert!(!d.allowed(), "{d:?}");
}

mod mutated_seeds {
    //! A stable stand-in for the fuzzer between its runs: the seeds with
    //! bytes replaced, inserted or removed, through the same check.
    //! `PROPTEST_CASES` raises the count.

    use proptest::prelude::*;

    fn seeds() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/permissions");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        seeds
    }

    proptest! {
        #[test]
        fn mutated_seeds_pass_the_fuzz_check(
            seed in any::<prop::sample::Index>(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0u8..3, select(&b"=!<>~:#-{}[],\"' \n$@.abuXY0129"[..])),
                1..6,
            ),
        ) {
            let seeds = seeds();
            let mut data = seeds[seed.index(seeds.len())].clone();
            for (at, kind, byte) in edits {
                let i = at.index(data.len().max(1)).min(data.len());
                match kind {
                    0 if i < data.len() => data[i] = byte,
                    1 => data.insert(i, byte),
                    _ if i < data.len() => {
                        data.remove(i);
                    }
                    _ => {}
                }
            }
            super::permissions_check::check(&data);
        }
    }

    use proptest::sample::select;
}
