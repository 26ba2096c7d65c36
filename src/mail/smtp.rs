//! Sending through an SMTP server with lettre, TLS on rustls.

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Delivered, MailError, Mailer};
use crate::config::{Smtp, SmtpSecurity};

/// Longest one SMTP command may take. The admin waits for the answer, so a
/// mail server that hangs is reported within seconds, not lettre's minute.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// An SMTP server. One connection per message: welcome emails are rare, so
/// a pool would only hold idle connections open.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
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
        Ok(SmtpMailer {
            transport: builder.build(),
        })
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
            .map_err(|e| MailError::Smtp(e.to_string()))?;
        Ok(Delivered { file: None })
    }
}
