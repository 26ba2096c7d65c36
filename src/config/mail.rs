//! The checked `mail` section: how welcome emails leave the gateway.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;

use super::raw::SmtpSecurity;

/// Welcome emails.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The sender.
    pub from: Mailbox,
    pub transport: MailTransport,
    /// `scheme://host[:port]` links point at; `None`: the admin request's
    /// own scheme and Host.
    pub base_url: Option<String>,
    /// How long a set-password link works.
    pub link_lifetime: Duration,
    pub subject: String,
}

/// Where messages go.
#[derive(Debug, Clone)]
pub enum MailTransport {
    Smtp(Smtp),
    /// A folder that receives one `.eml` file per message.
    Outbox(PathBuf),
}

/// An SMTP server and how to speak to it.
#[derive(Debug, Clone)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub credentials: Option<SmtpCredentials>,
}

/// A user name and the password read from the environment.
#[derive(Clone)]
pub struct SmtpCredentials {
    pub username: String,
    pub password_env: String,
    /// Never printed: `Debug` shows only its length.
    pub password: String,
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("password", &format_args!("<{} bytes>", self.password.len()))
            .finish()
    }
}
