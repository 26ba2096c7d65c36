//! Sending through an SMTP server with lettre, TLS on rustls.

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::CertificateError;

use super::{Delivered, MailError, Mailer};
use crate::config::{Smtp, SmtpSecurity};

/// Longest one SMTP command may take. The admin waits for the answer, so a
/// mail server that hangs is reported within seconds, not lettre's minute.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// An SMTP server. One connection per message: welcome emails are rare, so
/// a pool would only hold idle connections open.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `host:port`, for the admin's error messages.
    server: String,
    security: SmtpSecurity,
    /// What the server's certificate must chain to, in words.
    roots: String,
}

impl SmtpMailer {
    /// The server `s` names. Its certificate is checked for the configured
    /// host name against the CAs of `mail.smtp.ca_file` when set (and then
    /// only those: see [`crate::config::SmtpCa`]), else the system's roots.
    pub fn new(s: &Smtp) -> Result<SmtpMailer, MailError> {
        let tls_params = || {
            let mut params = TlsParameters::builder(s.host.clone());
            if let Some(ca) = &s.ca {
                params = params.certificate_store(CertificateStore::None);
                for der in &ca.certs {
                    let cert = Certificate::from_der(der.to_vec())
                        .map_err(|e| MailError::Setup(e.to_string()))?;
                    params = params.add_root_certificate(cert);
                }
            }
            params
                .build_rustls()
                .map_err(|e| MailError::Setup(e.to_string()))
        };
        let tls = match s.security {
            SmtpSecurity::Starttls => Tls::Required(tls_params()?),
            SmtpSecurity::Tls => Tls::Wrapper(tls_params()?),
            SmtpSecurity::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(COMMAND_TIMEOUT));
        if let Some(c) = &s.credentials {
            builder = builder.credentials(Credentials::new(c.username.clone(), c.password.clone()));
        }
        let roots = match &s.ca {
            Some(ca) => format!("a CA in {} (mail.smtp.ca_file)", ca.file.display()),
            None => "a CA this system trusts (set mail.smtp.ca_file for a private CA)".into(),
        };
        Ok(SmtpMailer {
            transport: builder.build(),
            server: format!("{}:{}", s.host, s.port),
            security: s.security,
            roots,
        })
    }

    /// `e` as the admin should read it: a connection that could not be
    /// secured is told apart from a server that refused the message, since
    /// the fix is in the certificates or the settings, not the address.
    fn error(&self, e: lettre::transport::smtp::Error) -> MailError {
        match self.tls_failure(&e) {
            Some(reason) => MailError::NotSecured {
                server: self.server.clone(),
                reason,
            },
            None => MailError::Smtp(e.to_string()),
        }
    }

    /// Why the connection could not be secured, if that is what `e` says.
    fn tls_failure(&self, e: &lettre::transport::smtp::Error) -> Option<String> {
        // lettre wraps the handshake's `io::Error` as a connection error;
        // tokio-rustls puts rustls' own error inside that.
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = next {
            let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
                err.downcast_ref::<std::io::Error>()?
                    .get_ref()?
                    .downcast_ref::<rustls::Error>()
            });
            if let Some(tls) = tls {
                return Some(self.describe(tls));
            }
            next = err.source();
        }
        if e.is_tls() {
            return Some(format!("TLS failed: {e}"));
        }
        // lettre reports a server that offers no STARTTLS only as a client
        // error with this text (lettre 0.11, `AsyncSmtpConnection::starttls`);
        // tests/welcome.rs pins it.
        if self.security == SmtpSecurity::Starttls
            && e.is_client()
            && e.to_string().contains("STARTTLS is not supported")
        {
            return Some(
                "the server does not offer STARTTLS, and `security: starttls` never sends in clear"
                    .into(),
            );
        }
        None
    }

    fn describe(&self, e: &rustls::Error) -> String {
        let what = match e {
            // `BadSignature`: a trusted CA has the issuer's name but did not
            // sign it (another CA of the same name, such as a regenerated
            // development CA).
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => format!("its certificate is not signed by {}", self.roots),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "its certificate is not valid for mail.smtp.host".to_string(),
            rustls::Error::InvalidCertificate(_) => "its certificate was refused".to_string(),
            _ => "the TLS handshake failed".to_string(),
        };
        format!("{what}: {e}")
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, message: Message) -> Result<Delivered, MailError> {
        self.transport
            .send(message)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Delivered { file: None })
    }
}
