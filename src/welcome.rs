//! Welcome emails (issue 11): after an admin has checked a user's access,
//! the admin action `POST /_guise/admin/users/{id}/welcome` sends the user
//! a one-time, expiring link to choose their password; the link opens the
//! set-password page `/_guise/set-password` ([`page`]).
//!
//! This module owns the link's life: made and stored by [`Welcomes::send`]
//! (the secret goes into the email only; the store keeps a hash of it),
//! judged by [`link::judge`], spent atomically when a password is set.
//! The message itself is [`crate::mail::welcome`]'s, its delivery the
//! configured [`crate::mail::Mailer`]'s. The admin API decides who may send
//! ([`crate::admin`]); the gateway's dispatcher routes the page here
//! ([`crate::gateway`]).
//!
//! The password is set through [`crate::user_sync::save`], the path every
//! admin change takes, so every node's directory has it at once; then the
//! user's sessions end everywhere.

pub mod link;
pub mod page;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::LoginMode;
use crate::live::Live;
use crate::mail::welcome::{self as message, Welcome};
use crate::mail::MailError;
use crate::metrics::Metrics;
use crate::respond::Refuse;
use crate::routes::GATEWAY_PREFIX;
use crate::session::SessionManager;
use crate::store::StoreError;
use crate::subject::Subject;
use crate::users::{Directory, User};

/// The set-password page, under [`GATEWAY_PREFIX`].
pub const PAGE: &str = "set-password";

/// Why a welcome email was not sent.
#[derive(Debug, thiserror::Error)]
pub enum WelcomeError {
    #[error("the gateway sends no email: add a `mail` section to its configuration")]
    NoMail,
    #[error("passwords are checked by the application (auth.mode: upstream), so a gateway password would not be used; welcome emails need auth.mode: gateway")]
    PasswordsUpstream,
    #[error("{0} is disabled; enable the account before sending a welcome email")]
    Disabled(String),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error("the session store is unavailable, so no link could be made: {0}")]
    Store(#[from] StoreError),
}

impl Refuse for WelcomeError {
    fn status(&self) -> u16 {
        match self {
            WelcomeError::NoMail | WelcomeError::PasswordsUpstream | WelcomeError::Disabled(_) => {
                409
            }
            WelcomeError::Mail(e) => e.status(),
            WelcomeError::Store(_) => 503,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            WelcomeError::NoMail => "mail_not_configured",
            WelcomeError::PasswordsUpstream => "passwords_upstream",
            WelcomeError::Disabled(_) => "user_disabled",
            WelcomeError::Mail(e) => e.code(),
            WelcomeError::Store(_) => "session_store_unavailable",
        }
    }
}

/// Why a set-password link does not work (or no longer does).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("This set-password link is not valid. Open the whole address from the email, or ask your administrator for a new welcome email.")]
    Unknown,
    #[error("This link has expired. Ask your administrator to send you a new welcome email.")]
    Expired,
    #[error("This link has already been used to set a password. Sign in with that password, or ask your administrator for a new welcome email.")]
    Used,
    #[error("This link is no longer valid: the account's password was set after it was sent. Sign in, or ask your administrator for a new welcome email.")]
    Superseded,
    #[error(
        "The account this link is for is disabled or no longer exists; ask your administrator."
    )]
    AccountUnavailable,
    #[error("passwords are checked by the application here, so the gateway sets none")]
    NotOffered,
    #[error("the session store is unavailable; try the link again in a moment (it still works)")]
    Store(#[from] StoreError),
}

impl LinkError {
    /// The `guise_set_password_links_total` label of this outcome.
    pub fn metric(&self) -> &'static str {
        match self {
            LinkError::Unknown => "invalid",
            LinkError::Expired => "expired",
            LinkError::Used => "used",
            LinkError::Superseded => "superseded",
            LinkError::AccountUnavailable => "account_unavailable",
            LinkError::NotOffered => "not_offered",
            LinkError::Store(_) => "store_unavailable",
        }
    }
}

impl Refuse for LinkError {
    fn status(&self) -> u16 {
        match self {
            LinkError::Unknown => 400,
            LinkError::Expired
            | LinkError::Used
            | LinkError::Superseded
            | LinkError::AccountUnavailable => 410,
            LinkError::NotOffered => 404,
            LinkError::Store(_) => 503,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            LinkError::Unknown => "link_invalid",
            LinkError::Expired => "link_expired",
            LinkError::Used => "link_used",
            LinkError::Superseded => "link_superseded",
            LinkError::AccountUnavailable => "account_unavailable",
            LinkError::NotOffered => "not_found",
            LinkError::Store(_) => "session_store_unavailable",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            LinkError::Unknown => "Link not valid",
            LinkError::Expired => "Link expired",
            LinkError::Used => "Link already used",
            LinkError::Superseded => "Link no longer valid",
            LinkError::AccountUnavailable => "Account unavailable",
            LinkError::NotOffered => "Not found",
            LinkError::Store(_) => "Try again shortly",
        }
    }
}

/// Sends welcome emails and answers their links; one per gateway.
pub struct Welcomes {
    pub sessions: Arc<SessionManager>,
    pub directory: Arc<Directory>,
    pub metrics: Metrics,
}

impl Welcomes {
    /// Make a link for `user` and email it, as `admin` asked on a request
    /// to `origin` (`scheme://host`, used for the link unless
    /// `mail.base_url` is set). The answer says to whom and until when,
    /// never the link.
    pub async fn send(
        &self,
        live: &Live,
        admin: &Subject,
        user: &User,
        origin: &str,
    ) -> Result<Value, WelcomeError> {
        let (mail, mailer) = match (&live.config.mail, &live.mailer) {
            (Some(m), Some(t)) => (m, t.clone()),
            _ => return Err(WelcomeError::NoMail),
        };
        if !matches!(live.config.auth.mode, LoginMode::Gateway) {
            return Err(WelcomeError::PasswordsUpstream);
        }
        if !user.is_active() {
            return Err(WelcomeError::Disabled(user.id.clone()));
        }
        let transport = mailer.kind();
        let failed = |e: WelcomeError| {
            self.metrics
                .welcome_emails
                .with_label_values(&[transport, "failed"])
                .inc();
            tracing::warn!(actor = %admin.actor.id, user = %user.id, transport, error = %e, "welcome email not sent");
            e
        };

        let now = self.sessions.clock().unix_now();
        let issued = link::issue(user, &admin.actor.id, now, mail.link_lifetime);
        let base = mail.base_url.as_deref().unwrap_or(origin);
        let address = format!("{base}{GATEWAY_PREFIX}{PAGE}?token={}", issued.secret);
        let site = url::Url::parse(base)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| base.to_string());
        let message = message::message(
            &mail.from,
            &mail.subject,
            &Welcome {
                name: &user.name,
                email: &user.email,
                link: &address,
                site: &site,
                // What the record says, rounded as it was.
                lifetime: Duration::from_secs(issued.record.expires_at - now),
            },
        )
        .map_err(|e| failed(e.into()))?;

        let record = serde_json::to_string(&issued.record).unwrap_or_default();
        let store = self.sessions.store();
        store
            .put_once(&issued.key, &record, issued.keep_for)
            .await
            .map_err(|e| failed(e.into()))?;
        let delivered = match mailer.send(message).await {
            Ok(d) => d,
            Err(e) => {
                // Nobody holds this link; spend it so it cannot surface
                // later from a mail queue that did take it after all.
                let _ = store.swap_once(&issued.key, &link::spent_marker(now)).await;
                return Err(failed(e.into()));
            }
        };
        self.metrics
            .welcome_emails
            .with_label_values(&[transport, "sent"])
            .inc();
        tracing::info!(
            actor = %admin.actor.id,
            user = %user.id,
            to = %user.email,
            transport,
            file = ?delivered.file,
            expires_at = issued.record.expires_at,
            "welcome email sent"
        );
        Ok(json!({
            "user": user.id,
            "sent_to": user.email,
            "transport": transport,
            "sent_at": now,
            "expires_at": issued.record.expires_at,
            "link_lifetime_seconds": issued.record.expires_at - now,
        }))
    }
}

#[cfg(test)]
mod tests;
