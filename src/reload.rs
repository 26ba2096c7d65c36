//! Live reload of the configuration file (SIGHUP).
//!
//! A new file is checked exactly like `check-config`; only a file that
//! passes, and changes nothing that needs a restart, replaces the live
//! configuration. Otherwise the old one stays and the refusal says why.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::{Config, ConfigError, Env};
use crate::live::{Live, SharedLive};
use crate::metrics::Metrics;

/// Why a reload was refused; the old configuration stays live.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("these settings only change on restart and differ from the running ones: {}; restart guise to apply them", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    #[error("the configuration could not be compiled: {0}")]
    Compile(String),
}

/// Re-reads one file into one gateway's live state.
#[derive(Clone)]
pub struct Reloader {
    pub path: PathBuf,
    pub live: SharedLive,
    pub metrics: Metrics,
    pub env: Arc<dyn Env + Send + Sync>,
    /// Rebuilt from the new file's users.
    pub users: Arc<crate::user_sync::UserSync>,
    /// Rebuilt from the new file's partners and bundles.
    pub partners: Arc<crate::partners::Registry>,
    /// Rebuilt from the new file's data-permission policy.
    pub permissions: Arc<crate::permissions::Permissions>,
}

impl Reloader {
    /// Load, check and swap in the file; the hash of the new live config.
    pub fn reload(&self) -> Result<String, ReloadError> {
        let result = self.try_reload();
        match &result {
            Ok(hash) => {
                self.metrics.config_reloads.with_label_values(&["ok"]).inc();
                self.metrics.set_live_config(hash);
                tracing::info!(config = %self.path.display(), hash = %hash, "configuration reloaded");
            }
            Err(e) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                let live_hash = self.live.load().config.hash.clone();
                tracing::error!(config = %self.path.display(), live_hash = %live_hash, error = %e, "configuration reload refused; the previous configuration stays live");
            }
        }
        result
    }

    fn try_reload(&self) -> Result<String, ReloadError> {
        let new = Config::load(&self.path, self.env.as_ref())?;
        let changed = self.live.load().config.fixed_settings_changed(&new);
        if !changed.is_empty() {
            return Err(ReloadError::NeedsRestart(changed));
        }
        let hash = new.hash.clone();
        let users = new.users.clone();
        let partners = Arc::new(new.partners.clone());
        let permissions = Arc::new(new.permissions.clone());
        let live = Live::build(new).map_err(ReloadError::Compile)?;
        self.live.store(Arc::new(live));
        self.users.set_base(users);
        self.partners.set_base(partners);
        self.permissions.set_base(permissions);
        Ok(hash)
    }
}

/// Reloads on every SIGHUP until shutdown.
pub struct SighupService(pub Reloader);

#[async_trait]
impl BackgroundService for SighupService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; live reload is off");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!(config = %self.0.path.display(), "SIGHUP: reloading configuration");
                    let _ = self.0.reload();
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
