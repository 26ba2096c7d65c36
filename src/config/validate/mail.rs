//! Checking the `mail` section.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::Checker;
use crate::config::raw::{RawConfig, RawSmtp, SmtpSecurity};
use crate::config::{Env, Mail, MailTransport, Smtp, SmtpCa, SmtpCredentials};

/// The longest a set-password link may work: a link is a password in the
/// user's mailbox, so it must not outlive a forgotten email by much.
const MAX_LINK_HOURS: f64 = 24.0 * 30.0;
/// The shortest: one second (tests use a few seconds to see a link expire).
const MIN_LINK_HOURS: f64 = 1.0 / 3600.0;

impl Checker<'_> {
    /// The mail settings, `None` when the section is absent (or wrong, with
    /// an issue for each problem).
    pub(super) fn mail(&mut self, raw: &RawConfig, base: &Path, env: &dyn Env) -> Option<Mail> {
        let m = raw.mail.as_ref()?;
        let from = match m.from.parse() {
            Ok(f) => Some(f),
            Err(_) => {
                self.issue(
                    "mail.from",
                    format!(
                        "`{}` is not an email address (e.g. `Example <guise@example.com>`)",
                        m.from
                    ),
                );
                None
            }
        };
        let transport = match (&m.smtp, &m.outbox) {
            (Some(smtp), None) => self.smtp(smtp, base, env).map(MailTransport::Smtp),
            (None, Some(dir)) if dir.trim().is_empty() => {
                self.issue("mail.outbox", "name a folder");
                None
            }
            (None, Some(dir)) => Some(MailTransport::Outbox(base.join(dir))),
            _ => {
                self.issue(
                    "mail",
                    "give exactly one of `smtp` (send) or `outbox` (write .eml files)",
                );
                None
            }
        };
        // Every check runs before any `?`, so one run names every problem.
        let base_url = match &m.base_url {
            None => Some(None),
            Some(u) => self.origin("mail.base_url", u).map(Some),
        };
        let hours = m.link_lifetime_hours;
        if !(hours.is_finite() && (MIN_LINK_HOURS..=MAX_LINK_HOURS).contains(&hours)) {
            self.issue(
                "mail.link_lifetime_hours",
                format!("must be at least one second ({MIN_LINK_HOURS:.6}) and at most {MAX_LINK_HOURS} (30 days), not {hours}"),
            );
        }
        if m.subject.trim().is_empty() || m.subject.chars().any(char::is_control) {
            self.issue(
                "mail.subject",
                "must be a non-empty line without control characters",
            );
        }
        Some(Mail {
            from: from?,
            transport: transport?,
            base_url: base_url?,
            link_lifetime: Duration::from_secs_f64(
                // NaN was reported above; a panic here must not hide it.
                if hours.is_nan() {
                    MIN_LINK_HOURS
                } else {
                    hours
                }
                .clamp(MIN_LINK_HOURS, MAX_LINK_HOURS)
                    * 3600.0,
            ),
            subject: m.subject.clone(),
        })
    }

    fn smtp(&mut self, s: &RawSmtp, base: &Path, env: &dyn Env) -> Option<Smtp> {
        let host_ok = s.host.parse::<IpAddr>().is_ok()
            || (!s.host.is_empty()
                && s.host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        if !host_ok {
            self.issue(
                "mail.smtp.host",
                format!("`{}` is not a host name or address", s.host),
            );
        }
        // Without TLS the SMTP password and every link cross the network in
        // clear; a test server on this machine is the only place for that.
        let loopback = s.host.eq_ignore_ascii_case("localhost")
            || s.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if s.security == SmtpSecurity::None && !loopback {
            self.issue(
                "mail.smtp.security",
                format!("`none` sends passwords and links in clear, so it is only for a test server on loopback, not `{}`; use `starttls` or `tls`", s.host),
            );
        }
        let port = s.port.unwrap_or(match s.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        });
        if port == 0 {
            self.issue("mail.smtp.port", "must be between 1 and 65535");
        }
        let credentials = match (&s.username, &s.password_env) {
            (None, None) => None,
            (Some(username), Some(var)) => {
                if username.is_empty() {
                    self.issue("mail.smtp.username", "must not be empty");
                }
                match env.var(var) {
                    Some(password) if !password.is_empty() => Some(SmtpCredentials {
                        username: username.clone(),
                        password_env: var.clone(),
                        password,
                    }),
                    _ => {
                        self.issue(
                            "mail.smtp.password_env",
                            format!("environment variable ${var} is not set (it must hold the SMTP password)"),
                        );
                        None
                    }
                }
            }
            (Some(_), None) => {
                self.issue(
                    "mail.smtp.password_env",
                    "`username` needs `password_env`, the environment variable that holds the password",
                );
                None
            }
            (None, Some(_)) => {
                self.issue(
                    "mail.smtp.username",
                    "`password_env` needs the `username` it is the password of",
                );
                None
            }
        };
        let ca = match &s.ca_file {
            None => None,
            Some(file) => Some(self.smtp_ca(file, s.security, base)?),
        };
        Some(Smtp {
            host: s.host.clone(),
            port,
            security: s.security,
            credentials,
            ca,
        })
    }

    /// `mail.smtp.ca_file`, read and checked now: every certificate in it
    /// must be one rustls will take as a root, since lettre would only fail
    /// on it when building the mailer, without the file's place in the
    /// configuration, and would silently take a file without any.
    fn smtp_ca(&mut self, file: &str, security: SmtpSecurity, base: &Path) -> Option<SmtpCa> {
        const AT: &str = "mail.smtp.ca_file";
        if security == SmtpSecurity::None {
            self.issue(
                AT,
                "`security: none` checks no certificate; use `starttls` or `tls` with a `ca_file`",
            );
            return None;
        }
        if file.trim().is_empty() {
            self.issue(AT, "name a PEM file of CA certificates");
            return None;
        }
        let path = base.join(file);
        let pem = match std::fs::read(&path) {
            Ok(pem) => pem,
            Err(e) => {
                self.issue(AT, format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let certs = match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
            Ok(certs) if !certs.is_empty() => certs,
            Ok(_) => {
                self.issue(
                    AT,
                    format!(
                        "{} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
                        path.display()
                    ),
                );
                return None;
            }
            Err(e) => {
                self.issue(AT, format!("{} is not valid PEM: {e}", path.display()));
                return None;
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            if let Err(e) = roots.add(cert.clone()) {
                self.issue(
                    AT,
                    format!(
                        "certificate {} of {} in {} cannot be a trusted root: {e}",
                        i + 1,
                        certs.len(),
                        path.display()
                    ),
                );
                return None;
            }
        }
        Some(SmtpCa { file: path, certs })
    }

    /// `scheme://host[:port]` of an `http(s)` URL that is nothing more.
    fn origin(&mut self, path: &str, u: &str) -> Option<String> {
        let url = match url::Url::parse(u) {
            Ok(url) => url,
            Err(e) => {
                self.issue(path, format!("`{u}` is not a URL: {e}"));
                return None;
            }
        };
        let bare = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.username().is_empty()
            && url.password().is_none()
            && url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none();
        if !bare {
            self.issue(
                path,
                format!("`{u}` must be an origin only, such as `https://gateway.example.com`"),
            );
            return None;
        }
        Some(url.origin().ascii_serialization())
    }
}
