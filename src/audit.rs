// DEV SCAFFOLD ONLY — replaced by the audit branch before commit.
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    Start,
    Stop,
    Expiry,
    End,
    Refusal,
    Request,
}
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditRecord {
    pub time_ms: u64,
    pub event: AuditEvent,
    pub impersonator: String,
    pub user: Option<String>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub session: Option<String>,
}
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("full")]
    Unavailable,
}
impl crate::respond::Refuse for AuditError {
    fn status(&self) -> u16 {
        503
    }
    fn code(&self) -> &'static str {
        "audit_unavailable"
    }
}
pub struct Audit;
impl Audit {
    pub fn record(&self, _r: AuditRecord) -> Result<(), AuditError> {
        Ok(())
    }
    pub fn accepting(&self) -> bool {
        true
    }
}
