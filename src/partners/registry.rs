//! What changes at run time: partners, bundles and tenants.
//!
//! The configuration file's records are the base; records saved in the
//! store by the admin API (or an import) are laid over them by id, as users
//! are (see [`crate::user_sync`]). Every node rebuilds its snapshot at
//! start, when any node announces a change of a kind
//! ([`StoreEvent::RecordsChanged`]), after the event stream was
//! interrupted, and when a reload brings a new base. Requests read one
//! snapshot each, lock-free.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Bundle, Partner, Settings, Tenant};
use crate::events::EventSink;
use crate::store::{Store, StoreError, StoreEvent};
use crate::users::User;

/// Record kinds in the store.
pub const PARTNER: &str = "partner";
pub const BUNDLE: &str = "bundle";
pub const TENANT: &str = "tenant";

/// One consistent view of partners, bundles and tenants.
#[derive(Debug)]
pub struct Snapshot {
    partners: HashMap<String, Arc<Partner>>,
    bundles: HashMap<String, Arc<Bundle>>,
    tenants: HashMap<String, Arc<Tenant>>,
    /// The default bundle: every configured area.
    default_bundle: Arc<Bundle>,
}

impl Snapshot {
    /// No partners, bundles or tenants; the default bundle holds the
    /// default areas. What a node has before its first rebuild.
    pub fn empty() -> Snapshot {
        let s = Settings::default();
        Snapshot {
            partners: HashMap::new(),
            bundles: HashMap::new(),
            tenants: HashMap::new(),
            default_bundle: Arc::new(Bundle {
                name: s.default_bundle,
                areas: s.areas,
            }),
        }
    }

    pub fn partner(&self, id: &str) -> Option<Arc<Partner>> {
        self.partners.get(id).cloned()
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<Tenant>> {
        self.tenants.get(id).cloned()
    }

    pub fn bundle(&self, name: &str) -> Option<Arc<Bundle>> {
        if name == self.default_bundle.name {
            return Some(self.default_bundle.clone());
        }
        self.bundles.get(name).cloned()
    }

    /// The bundle `user` works under: theirs, or the default.
    pub fn bundle_of(&self, user: &User, _settings: &Settings) -> Arc<Bundle> {
        user.bundle
            .as_deref()
            .and_then(|b| self.bundle(b))
            .unwrap_or_else(|| self.default_bundle.clone())
    }

    pub fn default_bundle(&self) -> &Arc<Bundle> {
        &self.default_bundle
    }

    /// Every partner, by id.
    pub fn partners(&self) -> Vec<Arc<Partner>> {
        let mut v: Vec<_> = self.partners.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every custom bundle, by name (the default one apart).
    pub fn bundles(&self) -> Vec<Arc<Bundle>> {
        let mut v: Vec<_> = self.bundles.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        let mut v: Vec<_> = self.tenants.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// The records read from the store, by kind.
#[derive(Default)]
struct Overlay {
    partners: Vec<Partner>,
    bundles: Vec<Bundle>,
    tenants: Vec<Tenant>,
}

/// Partners, bundles and tenants of this node (see the module docs).
pub struct Registry {
    snapshot: ArcSwap<Snapshot>,
    store: Arc<dyn Store>,
    base: Mutex<Arc<Settings>>,
    overlay: Mutex<Overlay>,
    /// Parents of records reached by their own id, looked up.
    pub parents: super::parents::Parents,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, base: Arc<Settings>) -> Arc<Registry> {
        let r = Arc::new(Registry {
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            store,
            base: Mutex::new(base),
            overlay: Mutex::new(Overlay::default()),
            parents: Default::default(),
        });
        r.rebuild();
        r
    }

    /// The current snapshot; a request keeps it to its end.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// A reload brought new settings.
    pub fn set_base(&self, base: Arc<Settings>) {
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = base;
        self.rebuild();
    }

    /// Re-read the stored records and rebuild; a store that is down leaves
    /// the snapshot as it was (the next event or resync tries again).
    pub async fn refresh(&self) {
        let read = async {
            Ok::<_, StoreError>(Overlay {
                partners: load(&*self.store, PARTNER).await?,
                bundles: load(&*self.store, BUNDLE).await?,
                tenants: load(&*self.store, TENANT).await?,
            })
        };
        match read.await {
            Ok(o) => {
                *self.overlay.lock().unwrap_or_else(|e| e.into_inner()) = o;
                self.rebuild();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read partners from the store; keeping them as they are")
            }
        }
    }

    fn rebuild(&self) {
        let base = self.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let overlay = self.overlay.lock().unwrap_or_else(|e| e.into_inner());
        let mut partners: HashMap<String, Arc<Partner>> = HashMap::new();
        for p in base.partners.iter().chain(overlay.partners.iter()) {
            partners.insert(p.id.clone(), Arc::new(p.clone()));
        }
        let mut bundles: HashMap<String, Arc<Bundle>> = HashMap::new();
        for b in base.bundles.iter().chain(overlay.bundles.iter()) {
            // A custom bundle is a subset of the default one: an area that
            // is no longer configured is dropped rather than granted.
            let mut b = b.clone();
            b.areas.retain(|a| base.areas.contains(a));
            bundles.insert(b.name.clone(), Arc::new(b));
        }
        let mut tenants: HashMap<String, Arc<Tenant>> = HashMap::new();
        for t in base.tenants.list.iter().chain(overlay.tenants.iter()) {
            tenants.insert(t.id.clone(), Arc::new(t.clone()));
        }
        let default_bundle = Arc::new(Bundle {
            name: base.default_bundle.clone(),
            areas: base.areas.clone(),
        });
        self.snapshot.store(Arc::new(Snapshot {
            partners,
            bundles,
            tenants,
            default_bundle,
        }));
    }

    /// Save `record` of `kind` in the store, apply it here, and tell the
    /// other nodes. The caller has checked it.
    pub async fn save<T: Serialize>(
        &self,
        kind: &str,
        id: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt {
            key: format!("{kind}:{id}"),
            reason: e.to_string(),
        })?;
        self.store.save_record(kind, id, &json).await?;
        self.refresh().await;
        self.store
            .publish(&StoreEvent::RecordsChanged {
                kind: kind.to_string(),
            })
            .await
    }
}

async fn load<T: DeserializeOwned>(store: &dyn Store, kind: &str) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for (id, json) in store.load_records(kind).await? {
        match serde_json::from_str(&json) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::warn!(kind, id = %id, error = %e, "ignoring unreadable stored record")
            }
        }
    }
    Ok(out)
}

#[async_trait]
impl EventSink for Registry {
    async fn on_start(&self) {
        self.refresh().await
    }

    async fn on_event(&self, ev: &StoreEvent) {
        match ev {
            StoreEvent::RecordsChanged { .. } | StoreEvent::Resync => self.refresh().await,
            StoreEvent::SessionRevoked { .. } | StoreEvent::UserChanged { .. } => {}
        }
    }
}
