//! A small real SMTP server on a loopback port, for tests that send mail:
//! it speaks enough of RFC 5321 for a real client (lettre) to deliver a
//! message (EHLO/HELO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and
//! keeps what arrived for the test to read. No TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

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

/// Settings shared by the server's connections.
#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    /// `Some((user, password))`: mail is taken only after AUTH with these.
    credentials: Option<(String, String)>,
    /// Answer every RCPT with 550, as a server that refuses the address.
    refuse_recipients: AtomicBool,
}

/// The server; it stops when dropped.
pub struct SmtpServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpServer {
    /// A server that takes mail from anyone on loopback.
    pub async fn start() -> SmtpServer {
        SmtpServer::start_with(None).await
    }

    /// A server that takes mail only after `AUTH PLAIN` with these.
    pub async fn with_credentials(user: &str, password: &str) -> SmtpServer {
        SmtpServer::start_with(Some((user.to_string(), password.to_string()))).await
    }

    async fn start_with(credentials: Option<(String, String)>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind SMTP");
        let addr = listener.local_addr().expect("SMTP address");
        let shared = Arc::new(Shared {
            credentials,
            ..Shared::default()
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
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write
        .write_all(b"220 localhost ESMTP guise-test\r\n")
        .await?;
    let mut from = None::<String>;
    let mut to = Vec::new();
    let mut authed = None::<(String, String)>;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let verb = cmd.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => {
                let auth = if shared.credentials.is_some() {
                    "250-AUTH PLAIN\r\n"
                } else {
                    ""
                };
                format!("250-localhost\r\n{auth}250-8BITMIME\r\n250 SMTPUTF8\r\n")
            }
            "HELO" => "250 localhost\r\n".into(),
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
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
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
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognised\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// The address between `<` and `>` of a MAIL or RCPT command.
fn angle(cmd: &str) -> String {
    let start = cmd.find('<').map_or(0, |i| i + 1);
    let end = cmd[start..].find('>').map_or(cmd.len(), |i| start + i);
    cmd[start..end].to_string()
}
