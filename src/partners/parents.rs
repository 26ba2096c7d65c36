//! Where a record reached by its own id sits.
//!
//! A partner user reaches everything inside the companies and
//! relationships assigned to their partner, whoever created it (the FAQ's
//! example: all CTAs of an assigned company). A request such as
//! `PATCH /api/ctas/cta-11` names only the CTA; which company holds it is
//! in the app's record. Stage 7 reads that record from the upstream
//! (a [`Lookup`] under the gateway's service identity), takes the parent
//! ids from the fields `partners.parents` names, and keeps them for
//! `partners.lookup_seconds`, so a burst of requests on one record costs
//! one lookup.
//!
//! Reads are also filtered on the way back; a write can only be stopped
//! here, before it reaches the app.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PartnerError;
use crate::config::partners::ParentSpec;
use crate::live::Live;
use crate::lookup::{scalar_text, Fetched, Lookup};

/// The user id lookups of parents are signed with; upstreams that check
/// identity headers should let it read every record.
pub const SERVICE_USER: &str = "guise-partners";

/// A record's parents: `(resource, id)`.
pub type Found = Arc<[(String, String)]>;

/// Parents looked up by this node, briefly kept.
pub struct Parents {
    /// `(resource, id)` → when it was read, and the parents.
    cache: moka::future::Cache<(String, String), (Instant, Found)>,
    lookup: Lookup,
}

impl Default for Parents {
    fn default() -> Self {
        Parents {
            // Entries are checked against the configured time when read
            // (a reload may shorten it); this only bounds memory.
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            lookup: Lookup::new(SERVICE_USER),
        }
    }
}

impl Parents {
    /// The parents of record `id` of `spec.resource`: none when the app has
    /// no such record (so it is refused as any unassigned one is, and the
    /// answer tells nothing of what exists). A lookup that fails refuses
    /// the request: without the parents nothing says it is allowed.
    pub async fn of(
        &self,
        live: &Live,
        spec: &ParentSpec,
        id: &str,
        ttl: Duration,
        unix_now: u64,
    ) -> Result<Found, PartnerError> {
        let key = (spec.resource.clone(), id.to_string());
        if let Some((at, found)) = self.cache.get(&key).await {
            if at.elapsed() < ttl {
                return Ok(found);
            }
        }
        let got = self
            .lookup
            .record(live, &spec.path, &spec.pointer, id, unix_now)
            .await;
        match got {
            Fetched::Found(record) => {
                let found: Found = spec
                    .refs
                    .iter()
                    .filter_map(|(resource, field)| {
                        let id = record.pointer(field).and_then(scalar_text)?;
                        Some((resource.clone(), id))
                    })
                    .collect();
                if !ttl.is_zero() {
                    self.cache
                        .insert(key, (Instant::now(), found.clone()))
                        .await;
                }
                Ok(found)
            }
            // Not kept: a record made a moment later is found at once.
            Fetched::Missing => Ok(Arc::from([])),
            Fetched::Failed => Err(PartnerError::LookupFailed {
                resource: spec.resource.clone(),
            }),
        }
    }
}
