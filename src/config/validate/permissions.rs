//! Checking the `permissions` section: the policy's own check
//! ([`PolicySpec::check`]) names the field, which is placed under
//! `permissions.` so the error carries the YAML line.

use std::time::Duration;

use super::Checker;
use crate::config::permissions::{PolicySpec, Settings};
use crate::config::raw::RawConfig;

impl Checker<'_> {
    pub(super) fn permissions(&mut self, raw: &RawConfig) -> Settings {
        let r = &raw.permissions;
        let policy = PolicySpec {
            user_attributes: r.user_attributes.clone(),
            resources: r.resources.clone(),
            groups: r.groups.clone(),
        };
        if let Err(e) = policy.check() {
            self.issue(&format!("permissions.{}", e.field), e.reason);
        }
        // Every route's resource that the policy protects must say where
        // its records are, or nothing could be decided: checked by the
        // route table at start (see `crate::permissions::answer`).
        let minutes = r.refresh_minutes;
        if !minutes.is_finite() || !(1.0 / 60.0..=24.0 * 60.0).contains(&minutes) {
            self.issue(
                "permissions.refresh_minutes",
                "must be between one second (0.0167) and a day (1440)",
            );
        }
        let seconds = r.lookup_seconds;
        if !seconds.is_finite() || !(0.0..=3600.0).contains(&seconds) {
            self.issue("permissions.lookup_seconds", "must be between 0 and 3600");
        }
        Settings {
            policy,
            refresh: Duration::from_secs_f64(
                if minutes.is_finite() {
                    minutes.clamp(1.0 / 60.0, 1440.0)
                } else {
                    60.0
                } * 60.0,
            ),
            lookup_ttl: Duration::from_secs_f64(if seconds.is_finite() {
                seconds.clamp(0.0, 3600.0)
            } else {
                5.0
            }),
        }
    }
}
