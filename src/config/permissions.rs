//! The data-permission policy as written (see [`crate::permissions`]): in the YAML file's `permissions` section and in
//! the admin API's JSON. Plain data that serde reads; [`PolicySpec::check`]
//! says what is wrong with it, naming the field, before anything is
//! compiled (see `crate::permissions::policy`). It lives with the
//! configuration because the YAML file holds it; the admin API reads the
//! same types from JSON.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub mod ops;

use ops::{Operator, Value};

/// The most permission attributes a resource may have (as in the seed).
pub const MAX_ATTRIBUTES: usize = 20;

/// The longest chain of relations a resource may inherit through.
pub const MAX_RELATION_DEPTH: usize = 8;

/// The pseudo user attribute whose values are sharing-group names.
pub const USER_GROUP: &str = "User Group";

/// User fields every user has, usable in criteria and in `${user.…}`
/// values without being chosen as user attributes.
pub const BUILT_IN_USER_FIELDS: [&str; 3] = ["id", "email", "name"];

/// A whole data-permission policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// User attributes chosen for rules (`Business Unit`). Once added they
    /// stay: the admin API refuses to remove one.
    #[serde(default)]
    pub user_attributes: Vec<String>,
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
}

/// A protected kind of record (Relationship, Relationship Type, CTA).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// The resource name routes use (`relationship_type`).
    #[serde(default)]
    pub name: String,
    /// Permission attributes: what advice may test (at most 20).
    #[serde(default)]
    pub attributes: Vec<AttributeSpec>,
    /// The attribute that identifies a record (its id or key): what a
    /// route's path parameter names and what relations point at. Default:
    /// the first attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Related resources whose rules also grant access to this one.
    #[serde(default)]
    pub relations: Vec<RelationSpec>,
    /// "Everyone gets READ/WRITE". Left out, it is on when the resource
    /// has no rules and off when it has some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub everyone: Option<bool>,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Where guise fetches one record of this resource from the upstream
    /// (writes, and related records), `{id}` standing for its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupSpec>,
    /// CSS selectors of the HTML elements that show one record of this
    /// resource; its attributes are read from the element's `html`
    /// attributes.
    #[serde(default)]
    pub html: Vec<String>,
}

impl ResourceSpec {
    /// Whether everyone gets READ and WRITE, as the switch reads.
    pub fn everyone(&self) -> bool {
        self.everyone.unwrap_or(self.rules.is_empty())
    }

    pub fn attribute(&self, name: &str) -> Option<&AttributeSpec> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// The key attribute's name.
    pub fn key_name(&self) -> Option<&str> {
        self.key
            .as_deref()
            .or_else(|| self.attributes.first().map(|a| a.name.as_str()))
    }

    /// Names of the rules that test `attribute` in their advice.
    pub fn rules_using(&self, attribute: &str) -> Vec<String> {
        self.rules
            .iter()
            .filter(|r| r.advice.iter().any(|a| a.attribute == attribute))
            .map(|r| r.name.clone())
            .collect()
    }
}

/// A permission attribute: a name and where a record holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeSpec {
    /// As rules name it (`Name`, `Business Unit`).
    pub name: String,
    /// JSON pointer within a record (`/name`).
    pub field: String,
    /// The HTML attribute of an element that carries it (`data-name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// A related resource: `via` is the attribute of this resource that holds
/// the related record's key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationSpec {
    pub resource: String,
    pub via: String,
}

/// How to fetch one record from the upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    /// Upstream path with `{id}` (`/api/relationships/{id}`).
    pub path: String,
    /// JSON pointer to the record in the answer (`/data`); default the
    /// whole answer.
    #[serde(default)]
    pub pointer: String,
}

/// READ or WRITE. WRITE implies READ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Some(Action::Read),
            "write" => Some(Action::Write),
            _ => None,
        }
    }
}

/// A sharing rule: who (criteria) gets `action` on which records (advice).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default)]
    pub name: String,
    pub action: Action,
    /// On the user, all must hold. None: every user.
    #[serde(default)]
    pub criteria: Vec<CriterionSpec>,
    /// On the record, all must hold. None: every record.
    #[serde(default)]
    pub advice: Vec<AdviceSpec>,
}

/// A test on the user: an attribute (or `User Group`), an operator and
/// values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriterionSpec {
    pub attribute: String,
    #[serde(rename = "operator", alias = "op")]
    pub operator: String,
    #[serde(default, deserialize_with = "one_or_many", alias = "value")]
    pub values: Vec<String>,
}

/// A test on the record: a permission attribute, an operator, values
/// (which may be `${user.ATTRIBUTE}`), case-sensitive or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdviceSpec {
    #[serde(alias = "field")]
    pub attribute: String,
    #[serde(rename = "operator", alias = "op")]
    pub operator: String,
    #[serde(default, deserialize_with = "one_or_many", alias = "value")]
    pub values: Vec<String>,
    #[serde(default = "yes")]
    pub case_sensitive: bool,
}

fn yes() -> bool {
    true
}

/// A sharing group: users whose attributes meet all `criteria`, plus
/// `members` added by hand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub criteria: Vec<CriterionSpec>,
    /// User ids added by hand.
    #[serde(default)]
    pub members: Vec<String>,
}

/// `value: x` or `values: [x, y]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// What is wrong with a policy: the field (`resources[1].rules[0].advice[0].operator`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Letters and digits only, as the seed asks of sharing-group names.
pub fn is_group_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())
}

impl PolicySpec {
    /// Every problem is found here, with its field, so that compiling a
    /// checked spec cannot fail.
    pub fn check(&self) -> Result<(), SpecError> {
        let mut seen = HashSet::new();
        for (i, a) in self.user_attributes.iter().enumerate() {
            let f = format!("user_attributes[{i}]");
            if a.trim().is_empty() {
                return Err(err(f, "a user attribute needs a name"));
            }
            if a == USER_GROUP || BUILT_IN_USER_FIELDS.contains(&a.as_str()) {
                return Err(err(f, format!("`{a}` is built in and needs no adding")));
            }
            if !seen.insert(a.as_str()) {
                return Err(err(f, format!("`{a}` is listed twice")));
            }
        }
        let mut groups = HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let f = format!("groups[{i}]");
            if !is_group_name(&g.name) {
                return Err(err(
                    format!("{f}.name"),
                    format!(
                        "`{}`: sharing-group names are letters and digits only",
                        g.name
                    ),
                ));
            }
            if !groups.insert(g.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("`{}` is named twice", g.name),
                ));
            }
            for (j, c) in g.criteria.iter().enumerate() {
                let cf = format!("{f}.criteria[{j}]");
                if c.attribute == USER_GROUP {
                    return Err(err(
                        format!("{cf}.attribute"),
                        "a group's members are chosen by user attributes, not other groups",
                    ));
                }
                self.check_criterion(&cf, c, &groups)?;
            }
        }
        let group_names: HashSet<&str> = self.groups.iter().map(|g| g.name.as_str()).collect();
        let by_name: HashMap<&str, &ResourceSpec> = self
            .resources
            .iter()
            .map(|r| (r.name.as_str(), r))
            .collect();
        let mut names = HashSet::new();
        for (i, r) in self.resources.iter().enumerate() {
            let f = format!("resources[{i}]");
            if r.name.trim().is_empty() {
                return Err(err(format!("{f}.name"), "a resource needs a name"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(err(
                    format!("{f}.name"),
                    format!("`{}` is named twice", r.name),
                ));
            }
            self.check_resource(&f, r, &by_name, &group_names)?;
        }
        // Relations may not loop: inheritance would never end.
        for r in &self.resources {
            let mut path = vec![r.name.as_str()];
            cycle(&by_name, r, &mut path).map_err(|p| {
                err(
                    format!(
                        "resources[{}].relations",
                        index_of(&self.resources, &r.name)
                    ),
                    if p.len() > MAX_RELATION_DEPTH + 1 {
                        format!(
                            "relations chain more than {MAX_RELATION_DEPTH} deep: {}",
                            p.join(" -> ")
                        )
                    } else {
                        format!("relations loop: {}", p.join(" -> "))
                    },
                )
            })?;
        }
        Ok(())
    }

    fn check_criterion<S>(
        &self,
        f: &str,
        c: &CriterionSpec,
        groups: &HashSet<S>,
    ) -> Result<(), SpecError>
    where
        S: AsRef<str> + std::hash::Hash + Eq + std::borrow::Borrow<str>,
    {
        let op = Operator::parse(&c.operator).map_err(|e| err(format!("{f}.operator"), e))?;
        if c.attribute == USER_GROUP {
            if !matches!(op, Operator::In | Operator::NotIn) {
                return Err(err(
                    format!("{f}.operator"),
                    "User Group is tested with `in` or `not in`",
                ));
            }
            for (k, v) in c.values.iter().enumerate() {
                if !groups.contains(v.as_str()) {
                    return Err(err(
                        format!("{f}.values[{k}]"),
                        format!("`{v}` is not a sharing group"),
                    ));
                }
            }
        } else if !self.is_user_field(&c.attribute) {
            return Err(err(
                format!("{f}.attribute"),
                format!(
                    "`{}` is not a user attribute (add it to user_attributes first)",
                    c.attribute
                ),
            ));
        }
        check_values(f, op, &c.values, &|_| true)?;
        if c.values.iter().any(|v| Value::parse(v).is_user_ref()) {
            return Err(err(
                format!("{f}.values"),
                "criteria compare with fixed values; `${user.…}` belongs in advice",
            ));
        }
        Ok(())
    }

    /// A user attribute or a built-in user field.
    pub fn is_user_field(&self, name: &str) -> bool {
        BUILT_IN_USER_FIELDS.contains(&name) || self.user_attributes.iter().any(|a| a == name)
    }

    fn check_resource(
        &self,
        f: &str,
        r: &ResourceSpec,
        by_name: &HashMap<&str, &ResourceSpec>,
        groups: &HashSet<&str>,
    ) -> Result<(), SpecError> {
        if r.attributes.len() > MAX_ATTRIBUTES {
            return Err(err(
                format!("{f}.attributes"),
                format!(
                    "{} attributes; a resource has at most {MAX_ATTRIBUTES}",
                    r.attributes.len()
                ),
            ));
        }
        let mut attrs = HashSet::new();
        for (j, a) in r.attributes.iter().enumerate() {
            let af = format!("{f}.attributes[{j}]");
            if a.name.trim().is_empty() {
                return Err(err(format!("{af}.name"), "an attribute needs a name"));
            }
            if !attrs.insert(a.name.as_str()) {
                return Err(err(
                    format!("{af}.name"),
                    format!("`{}` is named twice", a.name),
                ));
            }
            if !a.field.starts_with('/') {
                return Err(err(
                    format!("{af}.field"),
                    format!("`{}` is not a JSON pointer (it starts with `/`)", a.field),
                ));
            }
            if let Some(h) = &a.html {
                if h.is_empty()
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(err(
                        format!("{af}.html"),
                        format!("`{h}` is not an HTML attribute name"),
                    ));
                }
            }
        }
        // Two pointers where one contains the other would read overlapping
        // spans of a listed item.
        for (j, a) in r.attributes.iter().enumerate() {
            for b in &r.attributes[j + 1..] {
                let nested =
                    |x: &str, y: &str| y.starts_with(x) && y.as_bytes().get(x.len()) == Some(&b'/');
                if a.field != b.field && (nested(&a.field, &b.field) || nested(&b.field, &a.field))
                {
                    return Err(err(
                        format!("{f}.attributes[{j}].field"),
                        format!("`{}` and `{}` point inside one another", a.field, b.field),
                    ));
                }
            }
        }
        if let Some(k) = &r.key {
            if r.attribute(k).is_none() {
                return Err(err(
                    format!("{f}.key"),
                    format!("`{k}` is not an attribute of {}", r.name),
                ));
            }
        }
        if r.everyone == Some(true) && !r.rules.is_empty() {
            return Err(err(
                format!("{f}.everyone"),
                "Everyone gets READ/WRITE deletes the resource's rules; turn it off to use rules",
            ));
        }
        for (j, rel) in r.relations.iter().enumerate() {
            let rf = format!("{f}.relations[{j}]");
            let Some(other) = by_name.get(rel.resource.as_str()) else {
                return Err(err(
                    format!("{rf}.resource"),
                    format!("`{}` is not a resource", rel.resource),
                ));
            };
            if other.key_name().is_none() {
                return Err(err(
                    format!("{rf}.resource"),
                    format!(
                        "`{}` has no attributes, so nothing can name its records",
                        rel.resource
                    ),
                ));
            }
            if r.attribute(&rel.via).is_none() {
                return Err(err(
                    format!("{rf}.via"),
                    format!("`{}` is not an attribute of {}", rel.via, r.name),
                ));
            }
        }
        if let Some(l) = &r.lookup {
            let holes = l.path.matches("{id}").count();
            if !l.path.starts_with('/') || holes != 1 {
                return Err(err(
                    format!("{f}.lookup.path"),
                    "a lookup path starts with `/` and has one `{id}`",
                ));
            }
            if !l.pointer.is_empty() && !l.pointer.starts_with('/') {
                return Err(err(format!("{f}.lookup.pointer"), "not a JSON pointer"));
            }
        }
        if !r.html.is_empty() && !r.attributes.iter().any(|a| a.html.is_some()) {
            return Err(err(
                format!("{f}.html"),
                "elements are judged by their attributes' `html` names, and none has one",
            ));
        }
        let mut rules = HashSet::new();
        for (j, rule) in r.rules.iter().enumerate() {
            let rf = format!("{f}.rules[{j}]");
            if rule.name.trim().is_empty() {
                return Err(err(format!("{rf}.name"), "a rule needs a name"));
            }
            if !rules.insert(rule.name.as_str()) {
                return Err(err(
                    format!("{rf}.name"),
                    format!("`{}` is named twice", rule.name),
                ));
            }
            for (k, c) in rule.criteria.iter().enumerate() {
                self.check_criterion(&format!("{rf}.criteria[{k}]"), c, groups)?;
            }
            for (k, a) in rule.advice.iter().enumerate() {
                let af = format!("{rf}.advice[{k}]");
                if r.attribute(&a.attribute).is_none() {
                    return Err(err(
                        format!("{af}.attribute"),
                        format!(
                            "`{}` is not a permission attribute of {}",
                            a.attribute, r.name
                        ),
                    ));
                }
                let op =
                    Operator::parse(&a.operator).map_err(|e| err(format!("{af}.operator"), e))?;
                check_values(&af, op, &a.values, &|name| self.is_user_field(name))?;
            }
        }
        Ok(())
    }
}

/// How many values `op` takes, and that `${user.X}` names a user field.
fn check_values(
    f: &str,
    op: Operator,
    values: &[String],
    user_field: &dyn Fn(&str) -> bool,
) -> Result<(), SpecError> {
    match op {
        Operator::IsEmpty | Operator::IsNotEmpty if !values.is_empty() => {
            return Err(err(
                format!("{f}.values"),
                format!("`{}` takes no value", op.as_str()),
            ));
        }
        Operator::IsEmpty | Operator::IsNotEmpty => {}
        _ if values.is_empty() => {
            return Err(err(
                format!("{f}.values"),
                format!("`{}` needs a value", op.as_str()),
            ));
        }
        Operator::Lt | Operator::Le | Operator::Gt | Operator::Ge if values.len() > 1 => {
            return Err(err(
                format!("{f}.values"),
                format!("`{}` takes one value", op.as_str()),
            ));
        }
        _ => {}
    }
    for (k, v) in values.iter().enumerate() {
        match Value::parse(v) {
            Value::User(name) if !user_field(&name) => {
                return Err(err(
                    format!("{f}.values[{k}]"),
                    format!("`{name}` is not a user attribute"),
                ));
            }
            Value::Bad(reason) => return Err(err(format!("{f}.values[{k}]"), reason)),
            _ => {}
        }
    }
    Ok(())
}

fn index_of(resources: &[ResourceSpec], name: &str) -> usize {
    resources.iter().position(|r| r.name == name).unwrap_or(0)
}

/// Depth-first walk of relations; the looping path when there is one.
fn cycle<'a>(
    by_name: &HashMap<&str, &'a ResourceSpec>,
    r: &'a ResourceSpec,
    path: &mut Vec<&'a str>,
) -> Result<(), Vec<String>> {
    for rel in &r.relations {
        let Some(next) = by_name.get(rel.resource.as_str()) else {
            continue;
        };
        if path.contains(&next.name.as_str()) || path.len() > MAX_RELATION_DEPTH {
            let mut p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            p.push(next.name.clone());
            return Err(p);
        }
        path.push(&next.name);
        cycle(by_name, next, path)?;
        path.pop();
    }
    Ok(())
}

/// The `permissions` section as read from YAML: the policy, inline, and
/// how long what depends on it is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPermissions {
    pub user_attributes: Vec<String>,
    pub resources: Vec<ResourceSpec>,
    pub groups: Vec<GroupSpec>,
    /// Users' facts (attributes, group membership) are recomputed at
    /// least this often, besides every change and "Refresh User Data".
    pub refresh_minutes: f64,
    /// How long a record looked up from the upstream, and a decision made
    /// with it, is reused.
    pub lookup_seconds: f64,
}

/// The one place the section's defaults are written: serde fills every
/// missing field from here.
impl Default for RawPermissions {
    fn default() -> Self {
        RawPermissions {
            user_attributes: Vec::new(),
            resources: Vec::new(),
            groups: Vec::new(),
            refresh_minutes: 60.0,
            lookup_seconds: 5.0,
        }
    }
}

/// The checked `permissions` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The policy the file holds: the base that admin changes kept in the
    /// store replace.
    pub policy: PolicySpec,
    pub refresh: std::time::Duration,
    pub lookup_ttl: std::time::Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: PolicySpec::default(),
            refresh: std::time::Duration::from_secs(3600),
            lookup_ttl: std::time::Duration::from_secs(5),
        }
    }
}
