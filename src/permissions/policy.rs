//! The compiled policy and the decision over it.
//!
//! A checked [`PolicySpec`] is compiled into indexed data: resources by
//! number, attributes by number within their resource, operators parsed,
//! case-blind values folded once, and each resource's rules listed per
//! action (a WRITE rule is listed under READ too, since WRITE implies
//! READ). The user side of every rule (its criteria) is evaluated once per
//! user into [`UserFacts`]; a decision then only runs the advice of the
//! rules that already apply to the user, and stops at the first grant.
//!
//! Most rules pin an attribute to a few literals (`Name = Product A`,
//! `Account in [..]`), and most records of a list match none of them, so
//! running every rule's advice on a refused record was most of a list
//! filter's time (issue 13's list target). Each resource therefore keeps a
//! `RuleIndex`: one such equality per rule, looked up by the record's
//! value, picks the only rules that can grant; the others still run in
//! order. Decisions are the same either way (tests/permissions_model.rs
//! checks them against a model of the spec written without the index).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use super::ops::{compare, fold, Operator, Value};
use super::spec::{Action, PolicySpec, SpecError, BUILT_IN_USER_FIELDS, USER_GROUP};
use crate::users::{Role, User};

/// A policy ready to decide with. Every node compiles the same spec to the
/// same policy; `epoch` tells apart the policies a node has had, so cached
/// decisions and user facts of an older one are never used.
#[derive(Debug)]
pub struct Policy {
    pub epoch: u64,
    spec: Arc<PolicySpec>,
    resources: Vec<Resource>,
    by_name: HashMap<String, usize>,
    /// User fields: the built-ins (id, email, name), then the chosen user
    /// attributes.
    user_fields: Vec<String>,
    groups: Vec<Group>,
    /// Every resource is on Everyone: the policy restricts nobody, and
    /// stage 8 has nothing to do. Known once, at compile time.
    open: bool,
}

#[derive(Debug)]
pub struct Resource {
    pub name: String,
    pub attributes: Vec<Attribute>,
    pub key: usize,
    relations: Vec<Relation>,
    pub everyone: bool,
    rules: Vec<Rule>,
    /// Rule numbers granting READ (READ and WRITE rules), then WRITE.
    by_action: [Vec<u32>; 2],
    /// Which rules a record's values leave in the running.
    index: RuleIndex,
    /// Whether deciding on a record needs no attribute but its key, so a
    /// related record is judged by the key alone, without a lookup.
    key_only: bool,
}

#[derive(Debug, Clone)]
pub struct Attribute {
    pub name: String,
    pub field: String,
    pub html: Option<String>,
}

#[derive(Debug)]
struct Relation {
    resource: usize,
    via: usize,
}

#[derive(Debug)]
struct Rule {
    name: String,
    criteria: Vec<Criterion>,
    advice: Vec<Advice>,
}

#[derive(Debug)]
struct Criterion {
    field: UserField,
    op: Operator,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum UserField {
    /// Index into [`Policy::user_fields`].
    Field(usize),
    /// Sharing-group membership; values are group names.
    Group,
}

#[derive(Debug)]
struct Advice {
    attr: usize,
    op: Operator,
    /// Literal values, folded when case-blind.
    literals: Vec<String>,
    /// Each literal as a number, when it is one (for `<`, `<=`, `>`, `>=`),
    /// parsed once here rather than per decision.
    numbers: Vec<Option<f64>>,
    /// `${user.X}` values, as user-field indices.
    user: Vec<usize>,
    case_sensitive: bool,
}

/// Which rules of one resource can grant a record, known from a lookup of
/// the record's values instead of by running every rule's advice.
///
/// A rule whose advice includes an `=` or `in` against literals only
/// (no `${user.X}`, whose value differs per user) grants nothing unless the
/// record's value is one of them, so the rule is filed under each literal
/// in one table per (attribute, case mode). Literals of case-blind advice
/// are already folded, and the record's value is looked up folded the same
/// way ([`Record::folded`]), so the lookup is exactly the advice's own
/// comparison. Every other rule (ranges, `contains`, `is empty`, `!=`,
/// user values, no advice) is in `rest` and always runs. A rule is filed
/// under one advice only, so it is never found twice.
///
/// Looking every table up costs about as much as running a few rules, so
/// a record granted by the first rule is decided slower than without the
/// index; a resource without tables, or a user with fewer rules than
/// `rest`, skips it (see [`Policy::decide`]). Asking the index rule by
/// rule instead, each table looked up when first needed, kept that case
/// fast but made the walk over 100 rules cost 0.7 µs, three times the
/// lookups.
#[derive(Debug, Default)]
struct RuleIndex {
    tables: Vec<IndexTable>,
    /// Rules filed nowhere, ascending.
    rest: Vec<u32>,
}

#[derive(Debug)]
struct IndexTable {
    attr: usize,
    case_sensitive: bool,
    /// A literal (folded when case-blind) and the rules filed under it,
    /// ascending. foldhash rather than SipHash: the table is looked up
    /// once per record of a list, SipHash was a third of a lookup's
    /// cost, and lookups of upstream values cannot grow the table, so
    /// there is no flooding to resist.
    rules: foldhash::HashMap<Box<str>, Vec<u32>>,
}

impl RuleIndex {
    fn new(rules: &[Rule]) -> RuleIndex {
        let mut index = RuleIndex::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = i as u32;
            let Some(a) = rule.advice.iter().find(|a| a.pins_to_literals()) else {
                index.rest.push(i);
                continue;
            };
            let at = match index
                .tables
                .iter()
                .position(|t| t.attr == a.attr && t.case_sensitive == a.case_sensitive)
            {
                Some(at) => at,
                None => {
                    index.tables.push(IndexTable {
                        attr: a.attr,
                        case_sensitive: a.case_sensitive,
                        rules: foldhash::HashMap::default(),
                    });
                    index.tables.len() - 1
                }
            };
            for l in &a.literals {
                let filed = index.tables[at].rules.entry(l.as_str().into()).or_default();
                // `in [a, a]` files the rule once.
                if filed.last() != Some(&i) {
                    filed.push(i);
                }
            }
        }
        index
    }

    /// The rules filed under `record`'s values, ascending.
    fn matched(&self, record: &Record<'_>) -> SmallVec<[u32; 16]> {
        let mut found = SmallVec::new();
        for t in &self.tables {
            let have = if t.case_sensitive {
                record.raw(t.attr)
            } else {
                record.folded(t.attr)
            };
            if let Some(rules) = have.and_then(|h| t.rules.get(h)) {
                found.extend_from_slice(rules);
            }
        }
        found.sort_unstable();
        found
    }
}

/// Two ascending lists of rule numbers with nothing in common, merged
/// ascending.
fn merged<'a>(a: &'a [u32], b: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x > y => b.next().copied(),
        (Some(_), _) => a.next().copied(),
        (None, _) => b.next().copied(),
    })
}

#[derive(Debug)]
struct Group {
    name: String,
    criteria: Vec<Criterion>,
    members: Vec<String>,
}

/// What the user side of the policy says about one user: computed once per
/// user and policy epoch, then shared by every decision.
#[derive(Debug, Clone)]
pub struct UserFacts {
    /// Shared with every cached decision's key, so a lookup of one does
    /// not copy it.
    pub user_id: Arc<str>,
    pub epoch: u64,
    pub super_admin: bool,
    /// Values of the user fields, as [`Policy::user_fields`] orders them.
    values: Vec<Option<String>>,
    /// The same, folded for case-blind advice.
    folded: Vec<Option<String>>,
    /// Names of the sharing groups the user is in.
    pub groups: Vec<String>,
    /// Per resource, per action: the rules whose criteria the user meets,
    /// ascending (the decision's rule index relies on it).
    applicable: Vec<[Vec<u32>; 2]>,
}

/// Who or what granted access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grant {
    SuperAdmin,
    /// The resource's "Everyone gets READ/WRITE" switch.
    Everyone {
        resource: usize,
    },
    Rule {
        resource: usize,
        rule: u32,
    },
}

/// A decision on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allowed(Grant),
    Denied,
    /// No rule grants it on what is known, and a related record that might
    /// could not be looked up: refused, with this reason (fail closed).
    Unavailable {
        resource: usize,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }
}

/// A related record fetched for inheritance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Related {
    /// Its attribute values, in the related resource's order.
    Found(Vec<Option<String>>),
    /// No such record upstream: grants nothing.
    Missing,
    /// The lookup failed.
    Unavailable,
}

/// Where related records come from: the request's prefetched lookups, or a
/// cache while filtering a list.
pub trait Lookups {
    fn related(&self, resource: usize, key: &str) -> Related;
}

/// No lookups: what cannot be judged by the key is unavailable.
pub struct NoLookups;

impl Lookups for NoLookups {
    fn related(&self, _resource: usize, _key: &str) -> Related {
        Related::Unavailable
    }
}

/// How deep inheritance goes; the policy check refuses longer chains of
/// relations (see [`crate::config::permissions::MAX_RELATION_DEPTH`]), so
/// this bound only keeps a decision's cost bounded.
const MAX_DEPTH: usize = crate::config::permissions::MAX_RELATION_DEPTH;

impl Policy {
    /// Compile `spec`, checking it first.
    pub fn compile(spec: PolicySpec, epoch: u64) -> Result<Policy, SpecError> {
        spec.check()?;
        let mut user_fields: Vec<String> =
            BUILT_IN_USER_FIELDS.iter().map(|s| s.to_string()).collect();
        user_fields.extend(spec.user_attributes.iter().cloned());
        let field_index = |name: &str| user_fields.iter().position(|f| f == name);
        let criterion = |c: &super::spec::CriterionSpec| -> Criterion {
            let op = Operator::parse(&c.operator).unwrap_or(Operator::Eq);
            let field = if c.attribute == USER_GROUP {
                UserField::Group
            } else {
                UserField::Field(field_index(&c.attribute).unwrap_or(0))
            };
            Criterion {
                field,
                op,
                values: c.values.clone(),
            }
        };
        let by_name: HashMap<String, usize> = spec
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut resources = Vec::with_capacity(spec.resources.len());
        for r in &spec.resources {
            let attributes: Vec<Attribute> = r
                .attributes
                .iter()
                .map(|a| Attribute {
                    name: a.name.clone(),
                    field: a.field.clone(),
                    html: a.html.clone(),
                })
                .collect();
            let attr = |name: &str| attributes.iter().position(|a| a.name == name).unwrap_or(0);
            let key = r.key_name().map_or(0, attr);
            let relations: Vec<Relation> = r
                .relations
                .iter()
                .map(|rel| Relation {
                    resource: by_name[rel.resource.as_str()],
                    via: attr(&rel.via),
                })
                .collect();
            let mut rules = Vec::with_capacity(r.rules.len());
            let mut by_action: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
            for (i, rule) in r.rules.iter().enumerate() {
                let advice = rule
                    .advice
                    .iter()
                    .map(|a| {
                        let mut literals = Vec::new();
                        let mut user = Vec::new();
                        for v in &a.values {
                            match Value::parse(v) {
                                Value::User(name) => user.push(field_index(&name).unwrap_or(0)),
                                Value::Literal(l) if a.case_sensitive => literals.push(l),
                                Value::Literal(l) => literals.push(fold(&l)),
                                Value::Bad(_) => {}
                            }
                        }
                        let numbers = literals.iter().map(|l: &String| number(l)).collect();
                        Advice {
                            numbers,
                            attr: attr(&a.attribute),
                            op: Operator::parse(&a.operator).unwrap_or(Operator::Eq),
                            literals,
                            user,
                            case_sensitive: a.case_sensitive,
                        }
                    })
                    .collect();
                rules.push(Rule {
                    name: rule.name.clone(),
                    criteria: rule.criteria.iter().map(criterion).collect(),
                    advice,
                });
                by_action[0].push(i as u32);
                if rule.action == Action::Write {
                    by_action[1].push(i as u32);
                }
            }
            let index = RuleIndex::new(&rules);
            let key_only = rules
                .iter()
                .flat_map(|r| r.advice.iter().map(|a| a.attr))
                .chain(relations.iter().map(|r| r.via))
                .all(|a| a == key);
            resources.push(Resource {
                name: r.name.clone(),
                attributes,
                key,
                relations,
                everyone: r.everyone(),
                rules,
                by_action,
                index,
                key_only,
            });
        }
        let groups = spec
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.clone(),
                criteria: g.criteria.iter().map(criterion).collect(),
                members: g.members.clone(),
            })
            .collect();
        Ok(Policy {
            epoch,
            spec: Arc::new(spec),
            open: resources.iter().all(|r| r.everyone),
            resources,
            by_name,
            user_fields,
            groups,
        })
    }

    pub fn spec(&self) -> &Arc<PolicySpec> {
        &self.spec
    }

    pub fn resource(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }

    /// Whether the policy protects nothing at all (every resource is on
    /// Everyone).
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// A record of `resource` known only by its key: the key in its
    /// attribute's slot, every other attribute absent. Enough for a
    /// [`key_only`](Self::key_only) resource.
    pub fn record_of_key<'k>(
        &self,
        resource: usize,
        key: &'k str,
    ) -> SmallVec<[Option<&'k str>; 8]> {
        let Some(r) = self.resources.get(resource) else {
            return SmallVec::new();
        };
        let mut record = SmallVec::from_elem(None, r.attributes.len());
        if let Some(slot) = record.get_mut(r.key) {
            *slot = Some(key);
        }
        record
    }

    /// Whether the resource restricts anyone: not on Everyone. A resource
    /// that does not may skip filtering altogether.
    pub fn restricts(&self, resource: usize) -> bool {
        self.resources.get(resource).is_some_and(|r| !r.everyone)
    }

    /// Names of the groups whose criteria or members take in `user`.
    pub fn groups_of(&self, user: &User) -> Vec<String> {
        let values = self.user_values(user);
        self.groups
            .iter()
            .filter(|g| self.in_group(g, user, &values))
            .map(|g| g.name.clone())
            .collect()
    }

    /// Whether `user` is in group `name` through its criteria (as opposed
    /// to by hand).
    pub fn matches_group_criteria(&self, name: &str, user: &User) -> bool {
        let values = self.user_values(user);
        self.groups
            .iter()
            .find(|g| g.name == name)
            .is_some_and(|g| {
                !g.criteria.is_empty() && g.criteria.iter().all(|c| self.holds(c, &values, &[]))
            })
    }

    fn in_group(&self, g: &Group, user: &User, values: &[Option<String>]) -> bool {
        g.members.contains(&user.id)
            || (!g.criteria.is_empty() && g.criteria.iter().all(|c| self.holds(c, values, &[])))
    }

    fn user_values(&self, user: &User) -> Vec<Option<String>> {
        self.user_fields
            .iter()
            .enumerate()
            .map(|(i, f)| match i {
                0 => Some(user.id.clone()),
                1 => Some(user.email.clone()),
                2 => Some(user.name.clone()),
                _ => user.attributes.get(f).cloned(),
            })
            .collect()
    }

    fn holds(&self, c: &Criterion, values: &[Option<String>], groups: &[String]) -> bool {
        match c.field {
            UserField::Field(i) => {
                c.op.test(values.get(i).and_then(|v| v.as_deref()), &c.values, true)
            }
            UserField::Group => {
                let member = groups.iter().any(|g| c.values.contains(g));
                match c.op {
                    Operator::NotIn => !member,
                    _ => member,
                }
            }
        }
    }

    /// The user side of the policy for `user`: evaluated once, used by
    /// every decision on their requests.
    pub fn facts(&self, user: &User) -> UserFacts {
        let values = self.user_values(user);
        let groups: Vec<String> = self
            .groups
            .iter()
            .filter(|g| self.in_group(g, user, &values))
            .map(|g| g.name.clone())
            .collect();
        let applicable = self
            .resources
            .iter()
            .map(|r| {
                let meets = |i: &&u32| {
                    r.rules[**i as usize]
                        .criteria
                        .iter()
                        .all(|c| self.holds(c, &values, &groups))
                };
                [
                    r.by_action[0].iter().filter(meets).copied().collect(),
                    r.by_action[1].iter().filter(meets).copied().collect(),
                ]
            })
            .collect();
        UserFacts {
            user_id: Arc::from(user.id.as_str()),
            epoch: self.epoch,
            super_admin: user.roles.contains(&Role::SuperAdmin),
            folded: values.iter().map(|v| v.as_deref().map(fold)).collect(),
            values,
            groups,
            applicable,
        }
    }

    /// May the user (`facts`) take `action` on `record`, a record of
    /// `resource` given as its attribute values in the resource's order?
    /// Super admins always may; then the resource's Everyone switch, its
    /// rules, and the rules of its related records, first grant wins.
    pub fn decide(
        &self,
        facts: &UserFacts,
        resource: usize,
        action: Action,
        record: &[Option<&str>],
        lookups: &dyn Lookups,
    ) -> Decision {
        if facts.super_admin {
            return Decision::Allowed(Grant::SuperAdmin);
        }
        // Facts of another policy name other rules: never used.
        if facts.epoch != self.epoch {
            return Decision::Denied;
        }
        self.decide_at(facts, resource, action, record, lookups, 0)
    }

    /// A decision without a record (a write that names none, such as a
    /// create): granted only by what grants `action` on every record of
    /// the resource, the Everyone switch or a rule without advice. Advice
    /// cannot be tested on a record nobody named, so it never passes.
    pub fn decide_any_record(
        &self,
        facts: &UserFacts,
        resource: usize,
        action: Action,
    ) -> Decision {
        if facts.super_admin {
            return Decision::Allowed(Grant::SuperAdmin);
        }
        let Some(r) = self.resources.get(resource) else {
            return Decision::Denied;
        };
        if r.everyone {
            return Decision::Allowed(Grant::Everyone { resource });
        }
        let applicable = facts
            .applicable
            .get(resource)
            .map_or(&[][..], |a| &a[action as usize][..]);
        applicable
            .iter()
            .find(|&&i| r.rules[i as usize].advice.is_empty())
            .map_or(Decision::Denied, |&i| {
                Decision::Allowed(Grant::Rule { resource, rule: i })
            })
    }

    fn decide_at(
        &self,
        facts: &UserFacts,
        resource: usize,
        action: Action,
        record: &[Option<&str>],
        lookups: &dyn Lookups,
        depth: usize,
    ) -> Decision {
        let Some(r) = self.resources.get(resource) else {
            return Decision::Denied;
        };
        if r.everyone {
            return Decision::Allowed(Grant::Everyone { resource });
        }
        let applicable = facts
            .applicable
            .get(resource)
            .map_or(&[][..], |a| &a[action as usize][..]);
        let view = Record::new(record);
        let grants = |i: &u32| {
            r.rules
                .get(*i as usize)
                .is_some_and(|rule| rule.advice.iter().all(|a| self.advise(a, facts, &view)))
        };
        let granted = if r.index.tables.is_empty() || applicable.len() < r.index.rest.len() {
            applicable.iter().copied().find(grants)
        } else {
            // The candidates and `applicable` are both ascending, so the
            // first grant found is the first in rule order, as without
            // the index.
            let matched = r.index.matched(&view);
            let first = merged(&r.index.rest, &matched)
                .filter(|i| applicable.binary_search(i).is_ok())
                .find(grants);
            first
        };
        if let Some(i) = granted {
            return Decision::Allowed(Grant::Rule { resource, rule: i });
        }
        if depth >= MAX_DEPTH {
            return Decision::Denied;
        }
        let mut unavailable = None;
        for rel in &r.relations {
            let Some(key) = record
                .get(rel.via)
                .copied()
                .flatten()
                .filter(|k| !k.is_empty())
            else {
                continue;
            };
            let Some(other) = self.resources.get(rel.resource) else {
                continue;
            };
            let decided = if other.key_only || other.everyone {
                let synthetic = self.record_of_key(rel.resource, key);
                self.decide_at(facts, rel.resource, action, &synthetic, lookups, depth + 1)
            } else {
                match lookups.related(rel.resource, key) {
                    Related::Found(values) => {
                        let values: SmallVec<[Option<&str>; 8]> =
                            values.iter().map(|v| v.as_deref()).collect();
                        self.decide_at(facts, rel.resource, action, &values, lookups, depth + 1)
                    }
                    Related::Missing => Decision::Denied,
                    Related::Unavailable => Decision::Unavailable {
                        resource: rel.resource,
                    },
                }
            };
            match decided {
                Decision::Allowed(g) => return Decision::Allowed(g),
                Decision::Unavailable { resource } => unavailable = Some(resource),
                Decision::Denied => {}
            }
        }
        match unavailable {
            Some(resource) => Decision::Unavailable { resource },
            None => Decision::Denied,
        }
    }

    fn advise(&self, a: &Advice, facts: &UserFacts, record: &Record<'_>) -> bool {
        let have = if a.case_sensitive {
            record.raw(a.attr)
        } else {
            record.folded(a.attr)
        };
        // `${user.X}`: the user's own value joins the literals; a user
        // without it matches nothing through it.
        let mine = if a.case_sensitive {
            &facts.values
        } else {
            &facts.folded
        };
        let users = || {
            a.user
                .iter()
                .filter_map(|&f| mine.get(f).and_then(|v| v.as_deref()))
        };
        let any = |f: &dyn Fn(&str) -> bool| a.literals.iter().any(|l| f(l)) || users().any(f);
        let valued = !a.literals.is_empty() || users().next().is_some();
        match a.op {
            Operator::IsEmpty => have.is_none_or(str::is_empty),
            Operator::IsNotEmpty => have.is_some_and(|h| !h.is_empty()),
            _ if !valued => false,
            Operator::Eq | Operator::In => have.is_some_and(|h| any(&|v| h == v)),
            Operator::Ne | Operator::NotIn => !have.is_some_and(|h| any(&|v| h == v)),
            Operator::Contains => have.is_some_and(|h| any(&|v| h.contains(v))),
            Operator::StartsWith => have.is_some_and(|h| any(&|v| h.starts_with(v))),
            Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge => {
                let Some(h) = have else { return false };
                let h_num = record.number(a.attr);
                let passes = |o: Ordering| match a.op {
                    Operator::Lt => o == Ordering::Less,
                    Operator::Le => o != Ordering::Greater,
                    Operator::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                };
                let literal = a.literals.iter().zip(&a.numbers).any(|(l, n)| {
                    passes(match (h_num, n) {
                        (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
                        _ => h.cmp(l.as_str()),
                    })
                });
                literal || users().any(|v| passes(compare(h, v)))
            }
        }
    }

    /// Whether a decision on a record of `resource` never needs more than
    /// its key (true for a resource on Everyone).
    pub fn key_only(&self, resource: usize) -> bool {
        self.resources
            .get(resource)
            .is_some_and(|r| r.key_only || r.everyone)
    }

    /// A grant in words, for the explain endpoint and logs.
    pub fn describe(&self, grant: Grant) -> GrantView {
        match grant {
            Grant::SuperAdmin => GrantView {
                by: "super_admin",
                resource: None,
                rule: None,
                groups: Vec::new(),
            },
            Grant::Everyone { resource } => GrantView {
                by: "everyone",
                resource: self.resources.get(resource).map(|r| r.name.clone()),
                rule: None,
                groups: Vec::new(),
            },
            Grant::Rule { resource, rule } => {
                let r = &self.resources[resource];
                let rule = &r.rules[rule as usize];
                let groups = rule
                    .criteria
                    .iter()
                    .filter(|c| matches!(c.field, UserField::Group))
                    .flat_map(|c| c.values.iter().cloned())
                    .collect();
                GrantView {
                    by: "rule",
                    resource: Some(r.name.clone()),
                    rule: Some(rule.name.clone()),
                    groups,
                }
            }
        }
    }

    pub fn resource_name(&self, i: usize) -> &str {
        self.resources.get(i).map_or("", |r| r.name.as_str())
    }

    /// Number of rules in the policy, for metrics and logs.
    pub fn rule_count(&self) -> usize {
        self.resources.iter().map(|r| r.rules.len()).sum()
    }
}

/// A grant as the explain endpoint shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrantView {
    /// `super_admin`, `everyone` or `rule`.
    pub by: &'static str,
    pub resource: Option<String>,
    pub rule: Option<String>,
    /// Sharing groups the rule's criteria name.
    pub groups: Vec<String>,
}

impl Advice {
    /// Whether this advice passes only when the record's value is one of
    /// its literals: what [`RuleIndex`] can file a rule under.
    fn pins_to_literals(&self) -> bool {
        matches!(self.op, Operator::Eq | Operator::In)
            && self.user.is_empty()
            && !self.literals.is_empty()
    }
}

impl Resource {
    pub fn attribute(&self, name: &str) -> Option<usize> {
        self.attributes.iter().position(|a| a.name == name)
    }
}

/// A number as rules compare numbers: the text, trimmed, read as a finite
/// float.
fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// One record's values as advice reads them. The case-folded and numeric
/// forms of a value are made at most once per decision, however many
/// rules test it, and only when a rule does.
struct Record<'a> {
    values: &'a [Option<&'a str>],
    folded: SmallVec<[OnceCell<Option<Cow<'a, str>>>; 8]>,
    numbers: SmallVec<[OnceCell<Option<f64>>; 8]>,
}

impl<'a> Record<'a> {
    fn new(values: &'a [Option<&'a str>]) -> Record<'a> {
        /// Empty cells for `n` values: on the stack, filled in one go, for
        /// the usual record of at most eight attributes. A record of a
        /// list is made once per item, and collecting from an iterator
        /// was a tenth of a decision.
        fn cells<T>(n: usize) -> SmallVec<[OnceCell<T>; 8]> {
            if n <= 8 {
                SmallVec::from_buf_and_len(std::array::from_fn(|_| OnceCell::new()), n)
            } else {
                (0..n).map(|_| OnceCell::new()).collect()
            }
        }
        Record {
            values,
            folded: cells(values.len()),
            numbers: cells(values.len()),
        }
    }

    fn raw(&self, attr: usize) -> Option<&'a str> {
        self.values.get(attr).copied().flatten()
    }

    fn folded(&self, attr: usize) -> Option<&str> {
        let cell = self.folded.get(attr)?;
        cell.get_or_init(|| {
            self.raw(attr).map(|v| {
                if v.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
                    Cow::Borrowed(v)
                } else {
                    Cow::Owned(fold(v))
                }
            })
        })
        .as_deref()
    }

    /// The value as a number. Folding never changes how a value reads as
    /// a number, so one form serves case-blind advice too.
    fn number(&self, attr: usize) -> Option<f64> {
        let cell = self.numbers.get(attr)?;
        *cell.get_or_init(|| self.raw(attr).and_then(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules over `Name` and `Score` of one resource, one per line:
    /// 0 `Name = A`, 1 `Name in [b, C]` case-blind, 2 `Score > 1`,
    /// 3 `Name = ${user.name}`, 4 `Name = b` and `Score < 3`, 5 no advice
    /// but a criterion nobody meets.
    const RULES: &str = r#"
resources:
  - name: item
    attributes: [{name: Name, field: /name}, {name: Score, field: /score}]
    rules:
      - {name: r0, action: read, advice: [{field: Name, operator: "=", value: A}]}
      - {name: r1, action: read, advice: [{field: Name, operator: in, value: [b, C], case_sensitive: false}]}
      - {name: r2, action: read, advice: [{field: Score, operator: ">", value: "1"}]}
      - {name: r3, action: read, advice: [{field: Name, operator: "=", value: "${user.name}"}]}
      - {name: r4, action: write, advice: [{field: Score, operator: "<", value: "3"}, {field: Name, operator: "=", value: b}]}
      - {name: r5, action: read, criteria: [{attribute: email, operator: "=", value: nobody}]}
"#;

    fn policy() -> Policy {
        Policy::compile(serde_saphyr::from_str(RULES).unwrap(), 1).unwrap()
    }

    /// The rules the index lets run on `record`.
    fn candidates(p: &Policy, record: &[Option<&str>]) -> Vec<u32> {
        let index = &p.resources[0].index;
        let matched = index.matched(&Record::new(record));
        merged(&index.rest, &matched).collect()
    }

    #[test]
    fn a_record_matching_no_pinned_value_runs_only_the_unpinned_rules() {
        let p = policy();
        assert_eq!(candidates(&p, &[Some("Z"), Some("5")]), [2, 3, 5]);
        assert_eq!(candidates(&p, &[None, None]), [2, 3, 5]);
    }

    #[test]
    fn pinned_rules_are_found_by_the_records_value_in_its_case_mode() {
        let p = policy();
        assert_eq!(candidates(&p, &[Some("A"), None]), [0, 2, 3, 5]);
        // Case-blind `in` folds the record's value; case-sensitive `=`
        // does not.
        assert_eq!(candidates(&p, &[Some("B"), None]), [1, 2, 3, 5]);
        assert_eq!(candidates(&p, &[Some("b"), None]), [1, 2, 3, 4, 5]);
        assert_eq!(candidates(&p, &[Some("c"), None]), [1, 2, 3, 5]);
    }

    #[test]
    fn the_first_granting_rule_in_rule_order_wins_over_the_index_order() {
        let p = policy();
        let u = User::new("u", "Zed", "u@example.test");
        let facts = p.facts(&u);
        let decide =
            |action, record: &[Option<&str>]| p.decide(&facts, 0, action, record, &NoLookups);
        let rule = |rule| Decision::Allowed(Grant::Rule { resource: 0, rule });
        // r1 (pinned to `b`) comes before r2 and r3 (run always).
        assert_eq!(decide(Action::Read, &[Some("b"), Some("2")]), rule(1));
        // r4 is the only WRITE rule.
        assert_eq!(decide(Action::Write, &[Some("b"), Some("2")]), rule(4));
        assert_eq!(
            decide(Action::Write, &[Some("B"), Some("2")]),
            Decision::Denied
        );
        // r3 compares with the user's own name, which the index cannot
        // know at compile time.
        assert_eq!(decide(Action::Read, &[Some("Zed"), None]), rule(3));
        assert_eq!(decide(Action::Read, &[Some("Z"), Some("9")]), rule(2));
        assert_eq!(
            decide(Action::Read, &[Some("Z"), Some("0")]),
            Decision::Denied
        );
    }
}
