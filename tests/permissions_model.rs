//! Data permissions (issue 13) against the seed's scenarios: no rules,
//! Everyone off, the Business Unit rule directly and through a sharing
//! group, inheritance by a CTA, WRITE implying READ, super admins, the
//! owner rule and case-blind advice; and `PolicySpec::check` naming the
//! bad field.
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
