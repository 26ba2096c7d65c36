//! The checked `licences` and `partners` sections, and the partner records
//! they hold: what [`crate::partners`] decides with. They live with the
//! configuration (which checks them) rather than with the rules, so the
//! configuration depends on nothing of the pipeline's.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The areas of the seed's default partner bundle.
pub const DEFAULT_AREAS: [&str; 7] = [
    "dashboard",
    "timeline",
    "cockpit",
    "success_plan",
    "companies",
    "reports",
    "scorecard",
];

/// The default of [`Settings::answer_max_bytes`]: 8 MiB.
pub const DEFAULT_ANSWER_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Whether a partner may use the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    #[default]
    Active,
    Inactive,
}

/// A partner organisation: a company tagged as partner, with the
/// through-partner customers assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: PartnerStatus,
    /// Companies assigned (the app's ids).
    #[serde(default)]
    pub companies: BTreeSet<String>,
    /// Relationships assigned.
    #[serde(default)]
    pub relationships: BTreeSet<String>,
    /// Reports shared with the partner.
    #[serde(default)]
    pub reports: BTreeSet<String>,
    /// The user an admin enters the partner's view as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_user: Option<String>,
}

/// A named set of areas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    pub areas: BTreeSet<String>,
}

/// A client tenant of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    #[serde(default = "default_hub")]
    pub hub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_quota: Option<u64>,
    /// The tenant's own users (paired users are not counted).
    #[serde(default)]
    pub users: u64,
    #[serde(default = "yes")]
    pub allow_partner_login: bool,
}

fn default_hub() -> String {
    "default".to_string()
}

fn yes() -> bool {
    true
}

/// The tenant role a paired user gets when no hub is configured (and the
/// app's roles are not listed): the one role every app has in some form.
pub const DEFAULT_TENANT_ROLE: &str = "user";

/// Tenants and paired users, as configured.
///
/// A paired user's roles inside a tenant are the app's role names, never
/// the gateway's [`crate::users::Role`]s: the tenant's admin and the
/// partner may change them (issue 11), which must never make anyone a
/// gateway admin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// How a request names its tenant: the path prefix around `{tenant}`
    /// (`/t/` and `/` for `/t/{tenant}/`).
    pub path_prefix: Option<(String, String)>,
    /// Paired users' default tenant roles by hub (`default` serves hubs not
    /// listed).
    pub hubs: BTreeMap<String, Vec<String>>,
    /// The app's tenant roles, in the file's order; `None`: any name the
    /// roles header can carry.
    pub roles: Option<Vec<String>>,
    /// The tenant roles a partner's primary user may give their partner's
    /// paired users. Defaults to every role some hub gives by default: a
    /// partner may move its paired users between the roles the tenants'
    /// automation already hands partners, and nothing more, unless the
    /// file says otherwise.
    pub partner_assignable: BTreeSet<String>,
    /// Route features paired users may not use.
    pub refused_for_paired: BTreeSet<String>,
    pub list: Vec<Tenant>,
}

impl TenantSettings {
    /// The tenant a request path names, if tenants are configured.
    pub fn tenant_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let (before, after) = self.path_prefix.as_ref()?;
        let rest = path.strip_prefix(before.as_str())?;
        let end = rest.find('/').unwrap_or(rest.len());
        let id = &rest[..end];
        let tail = &rest[end..];
        let ok = !id.is_empty()
            && (tail.starts_with(after.as_str()) || (tail.is_empty() && after == "/"));
        ok.then_some(id)
    }

    /// The home path of tenant `id`.
    pub fn home_of(&self, id: &str) -> String {
        match &self.path_prefix {
            Some((before, after)) => format!("{before}{id}{after}"),
            None => "/".to_string(),
        }
    }

    /// Paired users' default tenant roles in a tenant of `hub`.
    pub fn roles_for(&self, hub: &str) -> Vec<String> {
        self.hub_roles(hub)
            .cloned()
            .unwrap_or_else(|| vec![DEFAULT_TENANT_ROLE.to_string()])
    }

    /// The configured default roles of `hub` (its own, else `default`'s).
    fn hub_roles(&self, hub: &str) -> Option<&Vec<String>> {
        self.hubs.get(hub).or_else(|| self.hubs.get("default"))
    }

    /// Whether a tenant of `hub` gets configured default roles; why not.
    /// Only a file that lists the app's roles needs one: elsewhere the
    /// built-in [`DEFAULT_TENANT_ROLE`] serves, which such an app may not
    /// have.
    pub fn check_hub(&self, hub: &str) -> Result<(), String> {
        if self.roles.is_some() && self.hub_roles(hub).is_none() {
            return Err(format!(
                "hub `{hub}` has no default roles in `tenants.hubs`, and there is no `default` hub"
            ));
        }
        Ok(())
    }

    /// Whether `role` is one of the app's tenant roles (any header-safe
    /// name when they are not listed).
    pub fn is_role(&self, role: &str) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|all| all.iter().any(|r| r == role))
    }
}

/// The checked `licences`, `partners`, `tenants` and `resources` sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Seats of the Full licence; `None`: unlimited.
    pub full_seats: Option<u64>,
    /// Areas partner bundles draw from.
    pub areas: BTreeSet<String>,
    /// The bundle every partner user has unless given another.
    pub default_bundle: String,
    pub default_layout: Option<String>,
    pub bundles: Vec<Bundle>,
    pub partners: Vec<Partner>,
    /// Partner users may use paths no route names.
    pub unrouted_allowed: bool,
    /// The largest JSON answer filtered for a partner user; a larger one
    /// is refused (502), never passed on unfiltered.
    pub answer_max_bytes: usize,
    /// Client tenants, paired users and their tenant roles.
    pub tenants: TenantSettings,
    /// Resources whose records sit inside assigned ones, and how to find
    /// where.
    pub parents: Vec<ParentSpec>,
    /// How long a record's looked-up parents are kept.
    pub lookup_ttl: std::time::Duration,
}

/// The default of [`Settings::lookup_ttl`].
pub const DEFAULT_LOOKUP_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// The resources a partner has records of assigned to it directly.
pub const ASSIGNABLE: [&str; 4] = ["company", "relationship", "report", "partner"];

/// Records of `resource` sit inside assigned companies or relationships: a
/// request naming one by its own id is allowed when a parent is assigned,
/// and the parents are read from the upstream's record at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentSpec {
    pub resource: String,
    /// Upstream path with `{id}` (`/api/ctas/{id}`).
    pub path: String,
    /// JSON pointer to the record in the answer; empty: the whole answer.
    pub pointer: String,
    /// `(resource, JSON pointer)`: the fields that name the parents.
    pub refs: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            full_seats: None,
            areas: DEFAULT_AREAS.iter().map(|a| a.to_string()).collect(),
            default_bundle: "partner-default".to_string(),
            default_layout: None,
            bundles: Vec::new(),
            partners: Vec::new(),
            unrouted_allowed: false,
            answer_max_bytes: DEFAULT_ANSWER_MAX_BYTES,
            tenants: TenantSettings::default(),
            parents: Vec::new(),
            lookup_ttl: DEFAULT_LOOKUP_TTL,
        }
    }
}
