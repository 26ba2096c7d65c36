//! The partner gauges, set before every scrape from the directory and the
//! partner snapshot as they are then: Full seats, and each tenant's users
//! (its own, counted against its quota, and paired ones, which are not).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{seats, Registry};
use crate::live::SharedLive;
use crate::metrics::Metrics;
use crate::users::Directory;

pub struct PartnerGauges {
    pub directory: Arc<Directory>,
    pub registry: Arc<Registry>,
    pub live: SharedLive,
    pub metrics: Metrics,
}

#[async_trait]
impl crate::ops::ScrapeHook for PartnerGauges {
    async fn before_scrape(&self) {
        let m = &self.metrics;
        let total = self.live.load().config.partners.full_seats;
        let users = self.directory.all();
        // Unlimited: the seats used, and no `free` series.
        m.licence_seats.reset();
        let used = users.iter().filter(|u| super::holds_full_seat(u)).count();
        m.licence_seats
            .with_label_values(&["full", "used"])
            .set(used as i64);
        if let Some(s) = seats(users.iter().map(|u| &**u), total) {
            m.licence_seats
                .with_label_values(&["full", "free"])
                .set(s.free() as i64);
        }
        let mut paired: BTreeMap<&str, i64> = BTreeMap::new();
        for u in &users {
            if let Some(p) = &u.paired {
                *paired.entry(p.tenant.as_str()).or_default() += 1;
            }
        }
        // Tenants come and go: start from nothing each time.
        m.tenant_users.reset();
        m.tenant_user_quota.reset();
        for t in self.registry.snapshot().tenants() {
            m.tenant_users
                .with_label_values(&[&t.id, "own"])
                .set(t.users as i64);
            m.tenant_users
                .with_label_values(&[&t.id, "paired"])
                .set(paired.get(t.id.as_str()).copied().unwrap_or(0));
            if let Some(q) = t.user_quota {
                m.tenant_user_quota
                    .with_label_values(&[&t.id])
                    .set(q as i64);
            }
        }
    }
}
