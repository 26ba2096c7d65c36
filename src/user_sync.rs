//! Keeping each node's user directory equal to the file plus the changes
//! made through the admin API.
//!
//! The YAML users are the base; records saved in the store (admin changes)
//! are laid over them by id. Each node rebuilds its directory from both at
//! start, when another node announces a change, after the event stream was
//! interrupted, and when a reload brings a new base. [`save`] is the one way
//! a change is made (admin API, set-password links), so every change reaches
//! the store, this node and the others alike.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::respond::Refuse;
use crate::store::{Store, StoreError, StoreEvent};
use crate::users::{Directory, User};

/// Why a changed user was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The directory refuses the record (say, an email another user holds).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refuse for SaveError {
    fn status(&self) -> u16 {
        match self {
            SaveError::Refused(_) => 400,
            SaveError::Store(_) => 503,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            SaveError::Refused(_) => "bad_request",
            SaveError::Store(_) => "session_store_unavailable",
        }
    }
}

/// Check `user` against the directory, then persist it in the store, put
/// it in this node's directory and tell the other nodes. Checked first: a
/// record the directory refuses is never stored, where it would stop every
/// node's directory from being rebuilt.
pub async fn save(store: &dyn Store, directory: &Directory, user: User) -> Result<(), SaveError> {
    directory
        .check_upsert(&user)
        .map_err(|e| SaveError::Refused(e.to_string()))?;
    let json = serde_json::to_string(&user).map_err(|e| SaveError::Refused(e.to_string()))?;
    store.save_user(&user.id, &json).await?;
    let id = user.id.clone();
    directory
        .upsert(user)
        .map_err(|e| SaveError::Refused(e.to_string()))?;
    store
        .publish(&StoreEvent::UserChanged { user_id: id })
        .await?;
    Ok(())
}

pub struct UserSync {
    directory: Arc<Directory>,
    store: Arc<dyn Store>,
    /// Users from the configuration file.
    base: Mutex<Vec<User>>,
    /// Users last read from the store.
    overlay: Mutex<Vec<User>>,
    metrics: Metrics,
}

impl UserSync {
    pub fn new(
        directory: Arc<Directory>,
        store: Arc<dyn Store>,
        base: Vec<User>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let sync = Arc::new(UserSync {
            directory,
            store,
            base: Mutex::new(base),
            overlay: Mutex::new(Vec::new()),
            metrics,
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

    /// Lay the stored records over the file's users and swap the result
    /// in. A record the directory refuses (say, an email another user
    /// holds) is left out, logged and counted, and the rest go on: one bad
    /// record must not freeze every later change on every node.
    fn rebuild(&self) {
        let base = self.base.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut stored: std::collections::BTreeMap<String, User> = self
            .overlay
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|u| (u.id.clone(), u.clone()))
            .collect();
        // The file's users first, each as stored if edited, else as
        // written; a stored edit the directory refuses falls back to the
        // file's version. Users only in the store follow.
        let mut ordered: Vec<Vec<User>> = base
            .into_iter()
            .map(|u| match stored.remove(&u.id) {
                Some(edit) => vec![edit, u],
                None => vec![u],
            })
            .collect();
        ordered.extend(stored.into_values().map(|u| vec![u]));
        for (id, e) in self.directory.replace_all_lenient(ordered) {
            self.metrics.user_records_skipped.inc();
            tracing::error!(user = %id, error = %e, "user record left out of the directory");
        }
    }
}

#[async_trait]
impl EventSink for UserSync {
    async fn on_start(&self) {
        self.refresh().await
    }

    async fn on_event(&self, ev: &StoreEvent) {
        match ev {
            StoreEvent::UserChanged { .. } | StoreEvent::Resync => self.refresh().await,
            StoreEvent::SessionRevoked { .. } | StoreEvent::RecordsChanged { .. } => {}
        }
    }
}
