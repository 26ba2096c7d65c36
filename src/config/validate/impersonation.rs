//! Checking the `impersonation` section.

use std::path::Path;
use std::time::Duration;

use super::Checker;
use crate::config::impersonation::{AuditSettings, Impersonation, Privacy, Targets};
use crate::config::raw::RawConfig;

/// The longest impersonation one may configure: a working day.
const MAX_MINUTES: f64 = 12.0 * 60.0;
/// The shortest: one second (tests watch one expire).
const MIN_MINUTES: f64 = 1.0 / 60.0;

impl Checker<'_> {
    pub(super) fn impersonation(&mut self, raw: &RawConfig, base: &Path) -> Impersonation {
        let r = &raw.impersonation;
        let minutes = r.max_minutes;
        if !minutes.is_finite() || !(MIN_MINUTES..=MAX_MINUTES).contains(&minutes) {
            self.issue(
                "impersonation.max_minutes",
                format!("must be between one second ({MIN_MINUTES:.4}) and {MAX_MINUTES} minutes"),
            );
        }
        let mut targets = Targets::default();
        for (i, t) in r.also_targets.iter().enumerate() {
            match t.as_str() {
                "users" => targets.users = true,
                "paired" => targets.paired = true,
                other => self.issue(
                    &format!("impersonation.also_targets[{i}]"),
                    format!("`{other}` is not a user class; use `users` or `paired` (partner users are always targets)"),
                ),
            }
        }
        let terms = r
            .terms
            .as_ref()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        if r.require_terms_ack && terms.is_none() {
            self.issue(
                "impersonation.require_terms_ack",
                "set `impersonation.terms` to the text impersonators acknowledge",
            );
        }
        for (i, f) in r.privacy.hidden_fields.iter().enumerate() {
            if !f.starts_with('/') {
                self.issue(
                    &format!("impersonation.privacy.hidden_fields[{i}]"),
                    format!("`{f}` is not a JSON pointer; write it as `/{f}`"),
                );
            }
        }
        if r.audit.buffer == 0 {
            self.issue("impersonation.audit.buffer", "must be at least 1");
        }
        if r.audit.stream_max_len == 0 {
            self.issue("impersonation.audit.stream_max_len", "must be at least 1");
        }
        Impersonation {
            enabled: r.enabled,
            max_duration: Duration::from_secs_f64(
                if minutes.is_finite() {
                    minutes.clamp(MIN_MINUTES, MAX_MINUTES)
                } else {
                    60.0
                } * 60.0,
            ),
            targets,
            terms: if r.require_terms_ack { terms } else { None },
            require_reason: r.require_reason,
            privacy: Privacy {
                hide_contacts_and_leads: r.privacy.hide_contacts_and_leads,
                hidden_fields: r.privacy.hidden_fields.clone(),
                disable_contacts_and_leads_export: r.privacy.disable_contacts_and_leads_export,
                exempt_internal: r.privacy.exempt_internal_staff,
            },
            audit: AuditSettings {
                stream_max_len: r.audit.stream_max_len,
                file: r.audit.file.as_ref().map(|f| base.join(f)),
                buffer: r.audit.buffer.max(1),
            },
        }
    }
}
