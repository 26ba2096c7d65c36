//! The checked `mail` section: how welcome emails leave the gateway.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use rustls::pki_types::CertificateDer;

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
    /// `mail.smtp.ca_file`: the only roots the server's certificate may
    /// chain to; `None`: the system's roots.
    pub ca: Option<SmtpCa>,
}

/// The CA certificates of `mail.smtp.ca_file`, read when the configuration
/// is loaded, so a missing or broken file stops start-up (or a reload)
/// rather than the first welcome email, and a running gateway never reads
/// the file again.
///
/// They replace the system's roots instead of adding to them: a relay with
/// a private CA is the reason to set the file, and trusting every public CA
/// as well would let anyone who can get a public certificate for the relay's
/// name (by taking over its DNS, say) read the mail and the SMTP password.
/// A relay with a public certificate needs no file.
#[derive(Clone)]
pub struct SmtpCa {
    /// The file as configured, joined to the configuration's folder; for
    /// messages.
    pub file: PathBuf,
    /// Its certificates, each one webpki accepts as a trust anchor.
    pub certs: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for SmtpCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCa")
            .field("file", &self.file)
            .field("certs", &self.certs.len())
            .finish()
    }
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
