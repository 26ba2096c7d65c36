//! `GET /_guise/events`: the server-sent event stream a tab watches.
//!
//! ```text
//! retry: 3417
//! event: hello
//! data: {"session":"0123456789ab"}
//!
//! : keep-alive
//!
//! event: ended
//! data: {"reason":"impersonation started in another tab"}
//! ```
//!
//! `hello` names the session the request's cookie holds *now*; a tab
//! rendered for another one is stale. `ended` says this session was
//! revoked (the reason is what [`crate::session::SessionManager::revoke_because`]
//! was given) or is gone, and ends the stream. Revocations arrive through
//! the store's event channel, which is Redis pub/sub across nodes; since a
//! message can be lost while Redis is away, the session is also read again
//! from the store on every keep-alive and after every
//! [`StoreEvent::Resync`].
//!
//! The stream ends by itself when the client goes away (a write fails) and
//! when the gateway shuts down, so it never holds up a drain (see
//! [`crate::drain`]); the browser then reconnects, to another node if this
//! one is gone.
//!
//! pingora writes each event out at once: an HTTP/1 body without a length
//! is flushed on every write (chunked here, or close-delimited for an
//! HTTP/1.0 client), and HTTP/2 data frames go out as written. That holds
//! only without pingora's downstream compression module, which would
//! buffer; guise installs none.

use std::time::Duration;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use rand::Rng;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::TabError;
use crate::call::Call;
use crate::respond;
use crate::session::{cookie, SessionManager};
use crate::store::{SessionKey, StoreEvent};

/// How often an idle stream sends a comment: often enough for idle
/// timeouts of proxies in between (commonly 30–60 s) and to find a client
/// that went away, and the pace of the re-reads of the session.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What `ended` says when the revocation gave no reason.
pub const DEFAULT_REASON: &str = "you were signed out";

/// What `ended` says when the session is found gone on a re-read (expired,
/// or revoked while the revocation did not reach this node).
const GONE_REASON: &str = "your session ended";

/// How often the stream looks at pingora's shutdown flag. pingora offers
/// a handler no future to wait on, only the flag; a drain waits at most
/// this long for the streams.
const SHUTDOWN_POLL: Duration = Duration::from_secs(1);

/// `GET /_guise/events`: stream the tab events of the request's session
/// until it ends, the client leaves or the gateway shuts down.
///
/// A request whose `session` query parameter names another session than
/// the cookie's gets its `hello` and the end of the stream at once: it
/// comes from a stale tab, which reloads on that `hello`.
pub async fn events(
    s: &mut Session,
    call: Call<'_>,
    sessions: &SessionManager,
) -> pingora::Result<()> {
    let replies = &call.live.replies;
    let Some(subject) = call.subject else {
        return respond::refuse(s, replies, &TabError::NotSignedIn).await;
    };
    let key = subject.session.key.clone();
    let reference = subject.session.record.reference.clone();
    // Subscribe before anything is read or sent, so that no revocation can
    // fall between the check below and the watch.
    let rx = sessions.store().subscribe();
    if !still_live(s, call, sessions, &key).await {
        return respond::refuse(s, replies, &TabError::NotSignedIn).await;
    }
    let stale_tab =
        query_param(s.req_header().uri.query(), "session").is_some_and(|asked| asked != reference);

    let mut h = ResponseHeader::build(200, Some(8))?;
    h.insert_header(http::header::CONTENT_TYPE, "text/event-stream")?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    // nginx and others in front would otherwise hold the events back.
    h.insert_header("x-accel-buffering", "no")?;
    // No length: chunked for HTTP/1.1, so the connection survives the
    // stream's end (HTTP/2 drops the header and frames the body itself).
    if !s.is_http2() && s.req_header().version == http::Version::HTTP_11 {
        h.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    replies.protect(&mut h, call.peer.https)?;
    if s.is_process_shutting_down() {
        s.set_keepalive(None);
    }
    s.write_response_header(Box::new(h), false).await?;

    if !send(s, hello(&reference)).await || stale_tab {
        return finish(s).await;
    }
    let mut watch = Watch::new(sessions, key, rx);
    loop {
        let frame = match watch.next().await {
            Next::Poll if s.is_process_shutting_down() => {
                s.set_keepalive(None);
                break;
            }
            Next::Poll => continue,
            Next::KeepAlive => Bytes::from_static(b": keep-alive\n\n"),
            Next::Ended(reason) => {
                send(s, ended(&reason)).await;
                break;
            }
            Next::Closed => break,
        };
        if !send(s, frame).await {
            return Ok(());
        }
    }
    finish(s).await
}

/// The session behind the request's cookie is still live: it may have been
/// revoked between the pipeline's lookup and the subscription. Read
/// through the node's cache, which knows revocations it has heard of
/// without asking the store. A store that cannot answer says nothing new.
async fn still_live(
    s: &Session,
    call: Call<'_>,
    sessions: &SessionManager,
    key: &SessionKey,
) -> bool {
    let name = cookie::name(&sessions.settings().cookie_name, call.peer.https);
    let Some(token) = cookie::read_token(s.req_header(), &name) else {
        return false;
    };
    match sessions.resolve(&token).await {
        Ok(Some(active)) => &active.key == key,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Write one event; `false` when the client is gone.
async fn send(s: &mut Session, frame: Bytes) -> bool {
    match s.write_response_body(Some(frame), false).await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "tab event stream: the client went away");
            s.set_keepalive(None);
            false
        }
    }
}

/// End the body properly (the last chunk of a chunked body).
async fn finish(s: &mut Session) -> pingora::Result<()> {
    if let Err(e) = s.write_response_body(None, true).await {
        tracing::debug!(error = %e, "tab event stream: the client went away at the end");
        s.set_keepalive(None);
    }
    Ok(())
}

/// The first event, with a reconnection delay spread over 2–5 s so that
/// the tabs of a node that went away do not all come back at once.
pub(super) fn hello(reference: &str) -> Bytes {
    let retry = rand::thread_rng().gen_range(2000..5000);
    let data = serde_json::json!({ "session": reference });
    Bytes::from(format!("retry: {retry}\nevent: hello\ndata: {data}\n\n"))
}

/// The last event. JSON keeps the reason on one line, as SSE data must be.
pub(super) fn ended(reason: &str) -> Bytes {
    let data = serde_json::json!({ "reason": reason });
    Bytes::from(format!("event: ended\ndata: {data}\n\n"))
}

/// The first value of query parameter `name`, decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// === impl Watch ===

/// What happened next to the watched session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next {
    /// Time to look at the shutdown flag.
    Poll,
    /// Time for a keep-alive; the session was read again and is live.
    KeepAlive,
    /// The session ended, for this reason.
    Ended(String),
    /// The store's event channel closed (the gateway is going away).
    Closed,
}

/// One session, watched through the store's events and re-read on a timer.
/// No I/O of its own, so it is tested with a paused clock.
pub(super) struct Watch<'a> {
    sessions: &'a SessionManager,
    key: SessionKey,
    rx: broadcast::Receiver<StoreEvent>,
    keep_alive: Interval,
    poll: Interval,
}

impl<'a> Watch<'a> {
    pub(super) fn new(
        sessions: &'a SessionManager,
        key: SessionKey,
        rx: broadcast::Receiver<StoreEvent>,
    ) -> Self {
        let timer = |period: Duration| {
            let mut t = interval_at(Instant::now() + period, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        };
        Watch {
            sessions,
            key,
            rx,
            keep_alive: timer(KEEP_ALIVE),
            poll: timer(SHUTDOWN_POLL),
        }
    }

    /// Wait for the next thing to tell.
    pub(super) async fn next(&mut self) -> Next {
        loop {
            tokio::select! {
                biased;
                ev = self.rx.recv() => match ev {
                    Ok(StoreEvent::SessionRevoked { key, reason }) if key == self.key => {
                        let reason = reason.filter(|r| !r.trim().is_empty());
                        return Next::Ended(reason.unwrap_or_else(|| DEFAULT_REASON.to_string()));
                    }
                    // Events may have been lost (Redis reconnected, or this
                    // receiver fell behind): ask the store.
                    Ok(StoreEvent::Resync) | Err(RecvError::Lagged(_)) => {
                        if let Some(reason) = self.recheck().await {
                            return Next::Ended(reason);
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Closed) => return Next::Closed,
                },
                _ = self.keep_alive.tick() => {
                    return match self.recheck().await {
                        Some(reason) => Next::Ended(reason),
                        None => Next::KeepAlive,
                    };
                }
                _ = self.poll.tick() => return Next::Poll,
            }
        }
    }

    /// Read the session from the store; why it ended, if it did.
    ///
    /// Straight from the store, not through `SessionManager::resolve`:
    /// that refreshes the idle timeout, and an open tab must not keep a
    /// session alive that its user has left. A store that cannot answer
    /// says nothing: the stream goes on, and the next read decides.
    async fn recheck(&self) -> Option<String> {
        match self.sessions.store().get_session(&self.key).await {
            Ok(Some(rec)) if rec.absolute_expiry > self.sessions.clock().unix_now() => None,
            Ok(_) => Some(GONE_REASON.to_string()),
            Err(e) => {
                tracing::debug!(error = %e, "tab event stream: the session store did not answer; trying again later");
                None
            }
        }
    }
}
