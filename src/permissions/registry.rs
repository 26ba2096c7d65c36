//! The policy in force on this node, and what is cached under it.
//!
//! The YAML file's policy is the base; the admin API saves a whole policy
//! in the store (record kind [`POLICY`]), which replaces the base on every
//! node: each rebuilds when any node announces a change
//! ([`StoreEvent::RecordsChanged`]), after the event stream was
//! interrupted, and on reload. Each rebuild gets a new epoch, and every
//! cache is keyed by it, so a rule change never serves a decision made
//! under the old rules, on any node, from the moment the event arrives.
//!
//! Three caches (moka):
//! - **facts**: a user's side of the rules ([`UserFacts`]), kept for the
//!   configured refresh time, dropped when the user changes and by
//!   "Refresh User Data";
//! - **decisions** on single records (by resource, action and key), kept
//!   as long as the lookups they may rest on;
//! - **lookups**: records fetched from the upstream, briefly, with
//!   concurrent fetches of one record coalesced into one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use moka::sync::Cache;

use super::metrics::Metrics;
use super::policy::{Decision, Policy, Related, UserFacts};
use crate::config::permissions::{Action, PolicySpec, Settings};
use crate::events::EventSink;
use crate::store::{Store, StoreError, StoreEvent};
use crate::users::User;

/// Record kind and id of the stored policy.
pub const POLICY: &str = "permissions";
const POLICY_ID: &str = "policy";
/// Record kind announced when users' facts must be recomputed everywhere
/// ("Refresh User Data", "Refresh Sharing Group"); nothing is stored.
pub const USER_DATA: &str = "permissions_user_data";

/// A cached decision's key: the policy epoch, the user, the resource, the
/// action and the record's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    pub epoch: u64,
    pub user: Arc<str>,
    pub resource: u32,
    pub action: Action,
    pub record: Box<str>,
}

/// Why the policy could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the policy changed under this edit {0} times in a row; try again")]
    Contended(u32),
}

/// The policy of this node and its caches (see the module docs).
pub struct Permissions {
    current: ArcSwap<Policy>,
    epoch: AtomicU64,
    base: Mutex<Arc<Settings>>,
    /// The stored policy, when an admin has changed it.
    stored: Mutex<Option<PolicySpec>>,
    /// Admin edits on this node go one at a time: they would only collide
    /// with each other in the store. Edits from other nodes are caught by
    /// the store's compare-and-set (see [`Permissions::update`]).
    editing: tokio::sync::Mutex<()>,
    store: Arc<dyn Store>,
    facts: Cache<String, Arc<UserFacts>>,
    decisions: Cache<DecisionKey, Decision>,
    lookups: moka::future::Cache<(u64, u32, String), Related>,
    /// Lookups of records from the upstream.
    pub(super) lookup: crate::lookup::Lookup,
    /// Answer filters compiled per policy epoch.
    pub filters: super::answer::FilterCache,
    pub metrics: Metrics,
}

impl Permissions {
    pub fn new(store: Arc<dyn Store>, base: Arc<Settings>, metrics: Metrics) -> Arc<Permissions> {
        let policy = Policy::compile(base.policy.clone(), 1).unwrap_or_else(|e| {
            // The configuration was checked; an empty policy (everyone on)
            // is only reached if that check and this one disagree.
            tracing::error!(error = %e, "the configured data-permission policy does not compile");
            Policy::compile(PolicySpec::default(), 1).expect("the empty policy compiles")
        });
        Arc::new(Permissions {
            current: ArcSwap::from_pointee(policy),
            epoch: AtomicU64::new(1),
            facts: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(base.refresh)
                .build(),
            decisions: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(base.lookup_ttl.max(std::time::Duration::from_millis(1)))
                .build(),
            lookups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(base.lookup_ttl.max(std::time::Duration::from_millis(1)))
                .build(),
            base: Mutex::new(base),
            stored: Mutex::new(None),
            editing: tokio::sync::Mutex::new(()),
            store,
            lookup: crate::lookup::Lookup::new(super::request::SERVICE_USER),
            filters: Default::default(),
            metrics,
        })
    }

    /// The policy in force; a request keeps it to its end.
    pub fn policy(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// The policy as an admin edits it: the stored one, else the file's.
    pub fn spec(&self) -> PolicySpec {
        self.policy().spec().as_ref().clone()
    }

    /// Whether the policy protects anything at all; with none, stage 8 has
    /// nothing to do.
    pub fn is_open(&self) -> bool {
        self.policy().is_open()
    }

    /// A reload brought new settings: the file's policy is the new base.
    pub fn set_base(&self, base: Arc<Settings>) {
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = base;
        self.rebuild();
    }

    fn rebuild(&self) {
        let spec = self
            .stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| {
                self.base
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .policy
                    .clone()
            });
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        match Policy::compile(spec, epoch) {
            Ok(p) => {
                tracing::info!(
                    epoch,
                    rules = p.rule_count(),
                    "data-permission policy in force"
                );
                self.current.store(Arc::new(p));
                // Keyed by epoch, old entries can no longer be hit; dropping
                // them frees the memory at once.
                self.facts.invalidate_all();
                self.decisions.invalidate_all();
                self.lookups.invalidate_all();
                self.metrics.refreshes.with_label_values(&["policy"]).inc();
            }
            Err(e) => {
                // A stored policy is checked before it is saved; one that
                // fails here was written by a newer or broken node.
                tracing::error!(error = %e, "the stored data-permission policy does not compile; keeping the one in force")
            }
        }
    }

    /// Re-read the stored policy and rebuild. A store that is down leaves
    /// the policy as it was (the next event or resync tries again).
    pub async fn refresh(&self) {
        match self.store.load_records(POLICY).await {
            Ok(records) => {
                let stored = records
                    .into_iter()
                    .find(|(id, _)| id == POLICY_ID)
                    .and_then(|(_, json)| match serde_json::from_str::<PolicySpec>(&json) {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::error!(error = %e, "ignoring an unreadable stored data-permission policy");
                            None
                        }
                    });
                *self.stored.lock().unwrap_or_else(|e| e.into_inner()) = stored;
                self.rebuild();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data-permission policy from the store; keeping the one in force")
            }
        }
    }

    /// Edit the policy of every node: `edit` changes the policy as stored
    /// now (the file's when none is), and the result is saved only if
    /// nobody saved another meanwhile; otherwise `edit` runs again on the
    /// newer one. Two admins changing different rules at once both keep
    /// their change, and one whose edit no longer applies (the rule's
    /// resource was deleted meanwhile) gets `edit`'s own refusal.
    ///
    /// `edit` checks what it wants to save; an error from it ends the
    /// update with nothing saved.
    pub async fn update<T, E>(
        &self,
        mut edit: impl FnMut(&mut PolicySpec) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<UpdateError>,
    {
        const ATTEMPTS: u32 = 8;
        let corrupt = |e: serde_json::Error| {
            UpdateError::Store(StoreError::Corrupt {
                key: format!("{POLICY}:{POLICY_ID}"),
                reason: e.to_string(),
            })
        };
        let _one_at_a_time = self.editing.lock().await;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Another node saved first. Its next edit may be queued
                // right behind; a short random pause lets this one through.
                let ms = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=(2u64 << attempt));
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            let stored = self
                .store
                .load_records(POLICY)
                .await
                .map_err(UpdateError::Store)?
                .into_iter()
                .find(|(id, _)| id == POLICY_ID)
                .map(|(_, json)| json);
            let mut spec = match &stored {
                Some(json) => serde_json::from_str::<PolicySpec>(json).map_err(corrupt)?,
                None => self
                    .base
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .policy
                    .clone(),
            };
            let out = edit(&mut spec)?;
            let json = serde_json::to_string(&spec).map_err(corrupt)?;
            let saved = self
                .store
                .replace_record(POLICY, POLICY_ID, stored.as_deref(), &json)
                .await
                .map_err(UpdateError::Store)?;
            if saved {
                self.refresh().await;
                self.store
                    .publish(&StoreEvent::RecordsChanged {
                        kind: POLICY.to_string(),
                    })
                    .await
                    .map_err(UpdateError::Store)?;
                return Ok(out);
            }
            self.metrics.save_conflicts.inc();
        }
        Err(UpdateError::Contended(ATTEMPTS).into())
    }

    /// "Refresh User Data" / "Refresh Sharing Group": every node drops its
    /// users' facts and cached decisions.
    pub async fn refresh_user_data(&self) -> Result<(), StoreError> {
        self.drop_user_data();
        self.store
            .publish(&StoreEvent::RecordsChanged {
                kind: USER_DATA.to_string(),
            })
            .await
    }

    fn drop_user_data(&self) {
        self.facts.invalidate_all();
        self.decisions.invalidate_all();
        self.metrics
            .refreshes
            .with_label_values(&["user_data"])
            .inc();
    }

    /// `user`'s side of the rules under `policy`, computed once and cached.
    pub fn facts(&self, policy: &Policy, user: &User) -> Arc<UserFacts> {
        if let Some(f) = self.facts.get(&user.id) {
            if f.epoch == policy.epoch {
                self.metrics.facts_hit.inc();
                return f;
            }
        }
        self.metrics.facts_miss.inc();
        let f = Arc::new(policy.facts(user));
        self.facts.insert(user.id.clone(), f.clone());
        f
    }

    /// A decision made before under the same epoch, user, resource, action
    /// and record key.
    pub fn cached_decision(&self, key: &DecisionKey) -> Option<Decision> {
        let d = self.decisions.get(key);
        match d {
            Some(_) => self.metrics.decisions_hit.inc(),
            None => self.metrics.decisions_miss.inc(),
        }
        d
    }

    /// Keep `decision`; one that rests on a failed lookup is not kept, so
    /// the next request tries again.
    pub fn keep_decision(&self, key: DecisionKey, decision: Decision) {
        if !matches!(decision, Decision::Unavailable { .. }) {
            self.decisions.insert(key, decision);
        }
    }

    /// A looked-up record, if one is cached (for list filtering, which
    /// cannot wait for a lookup).
    pub fn cached_lookup(&self, epoch: u64, resource: usize, key: &str) -> Option<Related> {
        let k = (epoch, resource as u32, key.to_string());
        // The future cache's sync read: no await in a body filter.
        self.lookups.get(&k).now_or_never_value()
    }

    /// The record `key` of `resource`, fetched by `fetch` unless cached;
    /// concurrent requests for one record share one fetch. A failed fetch
    /// is not cached.
    pub async fn lookup<F, Fut>(&self, epoch: u64, resource: usize, key: &str, fetch: F) -> Related
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Related>,
    {
        let k = (epoch, resource as u32, key.to_string());
        if let Some(r) = self.lookups.get(&k).await {
            self.metrics
                .cache
                .with_label_values(&["lookups", "hit"])
                .inc();
            return r;
        }
        self.metrics
            .cache
            .with_label_values(&["lookups", "miss"])
            .inc();
        let got = self
            .lookups
            .try_get_with(k, async {
                match fetch().await {
                    Related::Unavailable => Err(()),
                    r => Ok(r),
                }
            })
            .await;
        got.unwrap_or(Related::Unavailable)
    }
}

/// moka's future cache answers `get` with a future that is ready at once;
/// this takes its value without an executor.
trait NowOrNever<T> {
    fn now_or_never_value(self) -> Option<T>;
}

impl<F: std::future::Future<Output = Option<T>>, T> NowOrNever<T> for F {
    fn now_or_never_value(self) -> Option<T> {
        futures_util::FutureExt::now_or_never(self).flatten()
    }
}

#[async_trait]
impl EventSink for Permissions {
    async fn on_start(&self) {
        self.refresh().await
    }

    async fn on_event(&self, ev: &StoreEvent) {
        match ev {
            StoreEvent::RecordsChanged { kind } if kind == POLICY => self.refresh().await,
            StoreEvent::RecordsChanged { kind } if kind == USER_DATA => self.drop_user_data(),
            StoreEvent::UserChanged { user_id } => {
                self.facts.invalidate(user_id);
                // Decisions are keyed by user; theirs cannot be picked out
                // cheaply, and user changes are rare.
                self.decisions.invalidate_all();
            }
            StoreEvent::Resync => {
                self.refresh().await;
                self.drop_user_data();
            }
            StoreEvent::RecordsChanged { .. } | StoreEvent::SessionRevoked { .. } => {}
        }
    }
}
