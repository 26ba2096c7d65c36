//! The checked `impersonation` section: who may view the app as whom, for
//! how long, what stays hidden meanwhile, and where the audit goes.

use std::path::PathBuf;
use std::time::Duration;

/// The default of [`Impersonation::max_duration`]: one hour.
pub const DEFAULT_MAX_MINUTES: u64 = 60;

/// The default audit file when the store is in memory.
pub const DEFAULT_AUDIT_FILE: &str = "guise-audit.jsonl";

/// Impersonation ("Login as Partner User").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    /// The global switch; off, nobody may impersonate.
    pub enabled: bool,
    /// Longest an impersonation lasts; the next request after it ends it.
    pub max_duration: Duration,
    /// Which users may be impersonated besides partner users.
    pub targets: Targets,
    /// The terms of use an impersonator acknowledges once, if any.
    pub terms: Option<String>,
    /// A reason is asked for each time.
    pub require_reason: bool,
    /// What an impersonator is not shown.
    pub privacy: Privacy,
    /// Where every step is recorded.
    pub audit: AuditSettings,
}

impl Default for Impersonation {
    fn default() -> Self {
        Impersonation {
            enabled: false,
            max_duration: Duration::from_secs(DEFAULT_MAX_MINUTES * 60),
            targets: Targets::default(),
            terms: None,
            require_reason: false,
            privacy: Privacy::default(),
            audit: AuditSettings::default(),
        }
    }
}

/// User classes that may be impersonated. Partner users always may.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    /// Ordinary users (neither partner nor paired users, nor admins).
    pub users: bool,
    /// Paired (ghost) users inside client tenants.
    pub paired: bool,
}

/// Privacy while impersonating (Unifyr's GDPR settings).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Privacy {
    /// Routes tagged `personal_data` hide their records from impersonators.
    pub hide_contacts_and_leads: bool,
    /// Only these fields of each record are hidden (JSON pointers within
    /// an item); empty hides whole records.
    pub hidden_fields: Vec<String>,
    /// Routes tagged `export`, and personal-data downloads, are refused.
    pub disable_contacts_and_leads_export: bool,
    /// Users flagged `internal` (the operator's own staff) are exempt.
    pub exempt_internal: bool,
}

/// The audit stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Most entries the Redis Stream keeps (approximately, as `MAXLEN ~`).
    pub stream_max_len: u64,
    /// A JSON-lines file instead of the store (the default with the
    /// in-memory store).
    pub file: Option<PathBuf>,
    /// Records kept in memory while the audit cannot be written; past it,
    /// impersonated requests are refused (fail closed).
    pub buffer: usize,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            stream_max_len: 100_000,
            file: None,
            buffer: 10_000,
        }
    }
}
