//! A small real SMTP server on a loopback port, for tests that send mail:
//! it speaks enough of RFC 5321 for a real client (lettre) to deliver a
//! message (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and
//! keeps what arrived for the test to read.
//!
//! TLS as real servers do it ([`Tls`]): from the first byte (port 465), or
//! STARTTLS (RFC 3207) on a plain connection, after which the client starts
//! over with EHLO; a STARTTLS server offers AUTH and takes mail only once
//! the connection is encrypted, as a submission server that requires TLS
//! does. Certificates come from [`TestCerts`], made at test time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The user name and password the client authenticated with, if any.
    pub auth: Option<(String, String)>,
    /// The message (RFC 5322), dot-unstuffed, CRLF line ends.
    pub data: String,
    /// Whether the connection was encrypted when the message came.
    pub tls: bool,
}

impl Received {
    /// A header's value (the first of that name; folded lines unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The decoded body of the first part whose type is `mime` (such as
    /// `text/plain`), in a multipart message or a single-part one.
    pub fn part(&self, mime: &str) -> Option<String> {
        // Every part (and the message itself) is headers, a blank line,
        // then the body up to the next boundary line.
        for chunk in self.data.split("\r\n--") {
            let Some((head, body)) = chunk.split_once("\r\n\r\n") else {
                continue;
            };
            let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
            let field = |name: &str| {
                head.split("\r\n").find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_ascii_lowercase())
                })
            };
            let is_type = field("content-type").is_some_and(|t| t.starts_with(mime));
            if !is_type {
                continue;
            }
            let encoding = field("content-transfer-encoding").unwrap_or_default();
            return Some(decode(body, &encoding));
        }
        None
    }
}

fn decode(body: &str, encoding: &str) -> String {
    match encoding {
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 body");
            String::from_utf8(bytes).expect("UTF-8 body")
        }
        "quoted-printable" => {
            let joined = body.replace("=\r\n", "");
            let mut out = Vec::new();
            let bytes = joined.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'=' && i + 2 < bytes.len() {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    if let Ok(b) = u8::from_str_radix(hex, 16) {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                }
                out.push(bytes[i]);
                i += 1;
            }
            String::from_utf8(out).expect("UTF-8 body")
        }
        _ => body.to_string(),
    }
}

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Never, and it offers no STARTTLS.
    None,
    /// Plain first, `STARTTLS` in the EHLO answer; AUTH and mail only after
    /// the upgrade.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

/// The names the server's certificates are for.
const NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A CA made now and a server certificate it signed for `localhost` and
/// `127.0.0.1`, with the CA's certificate in a PEM file for `ca_file`.
/// Made by the gateway's own development-certificate code (rcgen), whose
/// certificates pass strict verifiers; the CA's key is gone once the leaf
/// is signed, so nothing else ever chains to it. Every such CA has the same
/// name, so another one's server is refused for a bad signature, not an
/// unknown issuer; [`TestCerts::self_signed`] gives the unknown issuer.
pub struct TestCerts {
    /// The CA certificate (PEM): what a client configured with it trusts.
    pub ca_file: PathBuf,
    server: Arc<rustls::ServerConfig>,
    _dir: tempfile::TempDir,
}

impl TestCerts {
    pub fn generate() -> TestCerts {
        let certs = guise::tls::DevCerts::generate(&NAMES).expect("test certificates");
        TestCerts::of(&certs.ca_pem, &certs.chain_pem, &certs.key_pem)
    }

    /// A server certificate no CA signed: its own issuer, under a name no
    /// other certificate here has (rcgen's). `ca_file` holds the
    /// certificate itself.
    pub fn self_signed() -> TestCerts {
        let names = NAMES.map(String::from).to_vec();
        let certified = rcgen::generate_simple_self_signed(names).expect("a certificate");
        let pem = certified.cert.pem();
        TestCerts::of(&pem, &pem, &certified.key_pair.serialize_pem())
    }

    fn of(ca_pem: &str, chain_pem: &str, key_pem: &str) -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("smtp-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("write the CA");
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("the chain's PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("the key's PEM");
        // The ring provider by name: the process may hold no default.
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the server's certificate");
        TestCerts {
            ca_file,
            server: Arc::new(server),
            _dir: dir,
        }
    }
}

/// Settings shared by the server's connections.
struct Shared {
    received: Mutex<Vec<Received>>,
    /// Every command's verb in order, with whether it came encrypted.
    commands: Mutex<Vec<(String, bool)>>,
    /// `Some((user, password))`: mail is taken only after AUTH with these.
    credentials: Option<(String, String)>,
    tls: Tls,
    /// The certificate for [`Tls::Starttls`] and [`Tls::Implicit`].
    acceptor: Option<TlsAcceptor>,
    /// Answer every RCPT with 550, as a server that refuses the address.
    refuse_recipients: AtomicBool,
}

/// The server; it stops when dropped.
pub struct SmtpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// A server with some of: credentials, TLS.
#[derive(Default)]
pub struct SmtpServerBuilder {
    credentials: Option<(String, String)>,
    tls: Option<(Tls, Arc<rustls::ServerConfig>)>,
}

impl SmtpServerBuilder {
    /// Take mail only after `AUTH PLAIN` with these.
    pub fn credentials(mut self, user: &str, password: &str) -> SmtpServerBuilder {
        self.credentials = Some((user.to_string(), password.to_string()));
        self
    }

    /// Speak TLS as `mode` says, with the server certificate of `certs`.
    pub fn tls(mut self, mode: Tls, certs: &TestCerts) -> SmtpServerBuilder {
        self.tls = Some((mode, certs.server.clone()));
        self
    }

    pub async fn start(self) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let (tls, acceptor) = match self.tls {
            None | Some((Tls::None, _)) => (Tls::None, None),
            Some((mode, config)) => (mode, Some(TlsAcceptor::from(config))),
        };
        let shared = Arc::new(Shared {
            received: Mutex::default(),
            commands: Mutex::default(),
            credentials: self.credentials,
            tls,
            acceptor,
            refuse_recipients: AtomicBool::new(false),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &s).await;
                });
            }
        });
        SmtpServer { addr, shared, task }
    }
}

impl SmtpServer {
    /// A server that takes mail from anyone on loopback.
    pub async fn start() -> SmtpServer {
        SmtpServer::builder().start().await
    }

    /// A server that takes mail only after `AUTH PLAIN` with these.
    pub async fn with_credentials(user: &str, password: &str) -> SmtpServer {
        SmtpServer::builder()
            .credentials(user, password)
            .start()
            .await
    }

    pub fn builder() -> SmtpServerBuilder {
        SmtpServerBuilder::default()
    }

    /// Refuse (550) or accept recipients from now on.
    pub fn refuse_recipients(&self, refuse: bool) {
        self.shared
            .refuse_recipients
            .store(refuse, Ordering::SeqCst);
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Every command so far (its verb, such as `EHLO`), on every
    /// connection, with whether it came over TLS.
    pub fn commands(&self) -> Vec<(String, bool)> {
        self.shared.commands.lock().unwrap().clone()
    }

    /// The `n`th message (from 0), waiting for it up to a deadline.
    pub async fn message(&self, n: usize) -> Received {
        super::eventually(Duration::from_secs(20), "a message over SMTP", || async {
            self.messages().get(n).cloned()
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let acceptor = shared.acceptor.as_ref();
    match (shared.tls, acceptor) {
        (Tls::Implicit, Some(acceptor)) => {
            let stream = acceptor.accept(stream).await?;
            session(stream, shared, true).await?;
        }
        _ => {
            if let Some(plain) = session(stream, shared, false).await? {
                let acceptor = acceptor.expect("STARTTLS is offered with a certificate only");
                let stream = acceptor.accept(plain).await?;
                session(stream, shared, true).await?;
            }
        }
    }
    Ok(())
}

/// One SMTP session on `stream`, from the greeting (or, after STARTTLS,
/// from the client's new EHLO) to QUIT. `Some(stream)` when the client
/// asked for STARTTLS: the session ends there, and whatever it had sent
/// after the command is dropped with the buffer, as RFC 3207 asks (no
/// plain-text command may leak into the encrypted session).
async fn session<S>(stream: S, shared: &Shared, tls: bool) -> std::io::Result<Option<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut io = BufReader::new(stream);
    if !(tls && shared.tls == Tls::Starttls) {
        io.write_all(b"220 localhost ESMTP guise-test\r\n").await?;
    }
    // Before TLS a STARTTLS server offers neither AUTH nor mail.
    let secure_enough = tls || shared.tls != Tls::Starttls;
    let mut greeted = false;
    let mut from = None::<String>;
    let mut to = Vec::new();
    let mut authed = None::<(String, String)>;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        shared.commands.lock().unwrap().push((verb.clone(), tls));
        let reply: String = match verb.as_str() {
            "EHLO" => {
                greeted = true;
                let mut lines = vec!["localhost"];
                if shared.tls == Tls::Starttls && !tls {
                    lines.push("STARTTLS");
                }
                if shared.credentials.is_some() && secure_enough {
                    lines.push("AUTH PLAIN");
                }
                lines.extend(["8BITMIME", "SMTPUTF8"]);
                let last = lines.len() - 1;
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                    .collect()
            }
            "HELO" => {
                greeted = true;
                "250 localhost\r\n".into()
            }
            "STARTTLS" if shared.tls == Tls::Starttls && !tls => {
                io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                io.flush().await?;
                return Ok(Some(io.into_inner()));
            }
            "AUTH" if !secure_enough => {
                "538 5.7.11 Encryption required for requested authentication mechanism\r\n".into()
            }
            "AUTH" => {
                let mut parts = cmd.split_whitespace().skip(1);
                match (
                    parts.next().map(str::to_ascii_uppercase).as_deref(),
                    parts.next(),
                ) {
                    (Some("PLAIN"), Some(b64)) => {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default();
                        let fields: Vec<String> = raw
                            .split(|b| *b == 0)
                            .map(|f| String::from_utf8_lossy(f).into_owned())
                            .collect();
                        let given = (
                            fields.get(1).cloned().unwrap_or_default(),
                            fields.get(2).cloned().unwrap_or_default(),
                        );
                        if shared.credentials.as_ref() == Some(&given) {
                            authed = Some(given);
                            "235 2.7.0 Authentication successful\r\n".into()
                        } else {
                            "535 5.7.8 Authentication credentials invalid\r\n".into()
                        }
                    }
                    _ => "504 5.5.4 Only AUTH PLAIN with an initial response\r\n".into(),
                }
            }
            "MAIL" if !greeted => "503 5.5.1 Send EHLO or HELO first\r\n".into(),
            "MAIL" if !secure_enough => "530 5.7.0 Must issue a STARTTLS command first\r\n".into(),
            "MAIL" if shared.credentials.is_some() && authed.is_none() => {
                "530 5.7.0 Authentication required\r\n".into()
            }
            "MAIL" => {
                from = Some(angle(&cmd));
                to.clear();
                "250 2.1.0 Ok\r\n".into()
            }
            "RCPT" if shared.refuse_recipients.load(Ordering::SeqCst) => {
                "550 5.1.1 No such user here\r\n".into()
            }
            "RCPT" if from.is_some() => {
                to.push(angle(&cmd));
                "250 2.1.5 Ok\r\n".into()
            }
            "RCPT" => "503 5.5.1 MAIL first\r\n".into(),
            "DATA" if from.is_some() && !to.is_empty() => {
                io.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                io.flush().await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 {
                        return Ok(None);
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                shared.received.lock().unwrap().push(Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    auth: authed.clone(),
                    data,
                    tls,
                });
                "250 2.0.0 Ok: queued\r\n".into()
            }
            "DATA" => "503 5.5.1 MAIL and RCPT first\r\n".into(),
            "RSET" => {
                from = None;
                to.clear();
                "250 2.0.0 Ok\r\n".into()
            }
            "NOOP" => "250 2.0.0 Ok\r\n".into(),
            "QUIT" => {
                io.write_all(b"221 2.0.0 Bye\r\n").await?;
                io.flush().await?;
                return Ok(None);
            }
            _ => "502 5.5.2 Command not recognised\r\n".into(),
        };
        io.write_all(reply.as_bytes()).await?;
        io.flush().await?;
    }
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn angle(cmd: &str) -> String {
    let start = cmd.find('<').map_or(0, |i| i + 1);
    let end = cmd[start..].find('>').map_or(cmd.len(), |i| start + i);
    cmd[start..end].to_string()
}
