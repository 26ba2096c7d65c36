//! Outgoing mail: the welcome email with its set-password link, and the two
//! ways it leaves the gateway.
//!
//! A [`Mailer`] delivers a finished [`Message`]: [`smtp::SmtpMailer`] hands
//! it to an SMTP server (STARTTLS or TLS on rustls, the server's
//! certificate checked against the system's roots or `mail.smtp.ca_file`),
//! [`outbox::Outbox`] writes it as an `.eml` file into a folder (the demo's
//! default, and a way to hand mail to another system). Which one runs is
//! `mail` in the configuration, compiled into [`crate::live::Live`] so a
//! reload can change it. [`welcome`] renders the message itself.
//!
//! Messages carry one-time secrets, so nothing here logs a message body.

pub mod outbox;
pub mod smtp;
pub mod welcome;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use lettre::Message;

use crate::config::{Mail, MailTransport};
use crate::respond::Refuse;

/// Why a message was not made or not delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address lettre will not put on a message.
    #[error("`{0}` is not an email address mail can be sent to")]
    Address(String),
    /// The message could not be put together (a template or a header).
    #[error("the email could not be composed: {0}")]
    Compose(String),
    /// The SMTP server refused the message or could not be reached.
    #[error("the mail server did not take the message: {0}")]
    Smtp(String),
    /// The connection to the SMTP server could not be secured as
    /// `mail.smtp.security` asks (a certificate refused, no STARTTLS), so
    /// nothing was sent over it, neither the password nor the message.
    #[error("no secure connection to the mail server {server}, so nothing was sent: {reason}")]
    NotSecured { server: String, reason: String },
    /// The outbox file could not be written.
    #[error("the message could not be written to the outbox {dir}: {reason}")]
    Outbox { dir: PathBuf, reason: String },
    /// The transport cannot be built from its settings (TLS set-up).
    #[error("mail.smtp: {0}")]
    Setup(String),
}

impl Refuse for MailError {
    fn status(&self) -> u16 {
        match self {
            MailError::Address(_) => 400,
            MailError::Compose(_) | MailError::Setup(_) => 500,
            // The gateway itself is fine; the next hop (a mail server, a
            // disk) failed it.
            MailError::Smtp(_) | MailError::NotSecured { .. } | MailError::Outbox { .. } => 502,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            MailError::Address(_) => "bad_address",
            MailError::Compose(_) | MailError::Setup(_) => "mail_setup",
            MailError::Smtp(_) | MailError::Outbox { .. } => "mail_failed",
            MailError::NotSecured { .. } => "mail_not_secured",
        }
    }
    fn title(&self) -> &'static str {
        "Email not sent"
    }
}

/// Where a delivered message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The `.eml` file, for the outbox.
    pub file: Option<PathBuf>,
}

/// Delivers finished messages.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// `smtp` or `outbox`, for answers and logs.
    fn kind(&self) -> &'static str;

    /// Deliver `message` to the recipients of its envelope.
    async fn send(&self, message: Message) -> Result<Delivered, MailError>;
}

/// The mailer `mail` configures. Builds only: nothing connects until a
/// message is sent.
pub fn build(mail: &Mail) -> Result<Arc<dyn Mailer>, MailError> {
    Ok(match &mail.transport {
        MailTransport::Smtp(s) => Arc::new(smtp::SmtpMailer::new(s)?),
        MailTransport::Outbox(dir) => Arc::new(outbox::Outbox::new(dir.clone())),
    })
}
