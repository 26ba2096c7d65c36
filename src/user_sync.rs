//! Keeping each node's user directory equal to the file plus the changes
//! made through the admin API.
//!
//! The YAML users are the base; records saved in the store (admin changes)
//! are laid over them by id. Each node rebuilds its directory from both at
//! start, when another node announces a change, after the event stream was
//! interrupted, and when a reload brings a new base.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::session::EventSink;
use crate::store::{Store, StoreEvent};
use crate::users::{Directory, User};

pub struct UserSync {
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    /// Users from the configuration file.
    base: Mutex<Vec<User>>,
    /// Users last read from the store.
    overlay: Mutex<Vec<User>>,
}

impl UserSync {
    pub fn new(directory: Arc<Directory>, store: Arc<dyn Store>, base: Vec<User>) -> Arc<Self> {
        let sync = Arc::new(UserSync {
            directory,
            store,
            base: Mutex::new(base),
            overlay: Mutex::new(Vec::new()),
        });
        sync.rebuild();
        sync
    }

    /// A reload brought new file users.
    pub fn set_base(&self, users: Vec<User>) {
        *self.base.lock().unwrap_or_else(|e| e.into_inner()) = users;
        self.rebuild();
    }

    /// Re-read the store's records and rebuild. A store that is down leaves
    /// the directory as it was; the next event or resync tries again.
    pub async fn refresh(&self) {
        match self.store.load_users().await {
            Ok(records) => {
                let mut users = Vec::with_capacity(records.len());
                for (id, json) in records {
                    match serde_json::from_str::<User>(&json) {
                        Ok(u) => users.push(u),
                        Err(e) => {
                            tracing::warn!(user = %id, error = %e, "ignoring unreadable stored user")
                        }
                    }
                }
                *self.overlay.lock().unwrap_or_else(|e| e.into_inner()) = users;
                self.rebuild();
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read users from the store; keeping the directory as it is")
            }
        }
    }

    fn rebuild(&self) {
        let mut by_id: std::collections::BTreeMap<String, User> = std::collections::BTreeMap::new();
        for u in self.base.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            by_id.insert(u.id.clone(), u.clone());
        }
        for u in self
            .overlay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            by_id.insert(u.id.clone(), u.clone());
        }
        if let Err(e) = self.directory.replace_all(by_id.into_values()) {
            tracing::error!(error = %e, "user directory not rebuilt; keeping the previous one");
        }
    }
}

#[async_trait]
impl EventSink for UserSync {
    async fn on_event(&self, ev: &StoreEvent) {
        match ev {
            StoreEvent::UserChanged { .. } | StoreEvent::Resync => self.refresh().await,
            StoreEvent::SessionRevoked { .. } => {}
        }
    }
}
