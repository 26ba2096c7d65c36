//! Putting the snippet into the app's pages as they stream through.
//!
//! lol_html finds the spot, guise writes the page. The rewriter is given
//! every chunk but asked to change nothing: its only handler notes where
//! the `<body>` element's end tag starts (lol_html knows `</body>` in a
//! script, a comment or an attribute for what it is, and reads tag names
//! without regard to case). What it writes out is the input unchanged, so
//! the number of bytes it has written is how far into the page it is sure
//! no `</body>` starts. The injector sends on the page's own bytes up to
//! that point, with the snippet inserted where the end tag starts, and
//! holds back only what the rewriter holds: a tag cut by a chunk boundary.
//!
//! The page the client gets is therefore the app's bytes with the snippet
//! in one place, whatever lol_html would have re-serialised, and memory is
//! bounded by the rewriter's limit. Should the rewriter fail (its limit
//! passed by a huge tag, or markup it finds ambiguous), the rest of the
//! page passes through untouched and the snippet goes at its very end,
//! where browsers still put it into the body: the page is never broken
//! for the sake of the snippet.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};
use lol_html::send;
use lol_html::{MemorySettings, OutputSink, Selector};
use pingora::http::{RequestHeader, ResponseHeader};

use super::TabError;

/// What the rewriter may buffer (a tag split across chunks, a huge inline
/// `data:` URL); past it the injector falls back to appending.
const MEMORY_LIMIT: usize = 256 * 1024;

/// No `</body>` seen (yet).
const NOWHERE: usize = usize::MAX;

/// Whether the answer to `req` gets the tab snippet: a page the browser
/// navigates to, answered whole and plain.
///
/// - the request lists `text/html` in `Accept` (navigations do; fragments
///   fetched by XHR usually ask for `*/*` or JSON), and where the browser
///   says what the request is for (`Sec-Fetch-Mode`, `Sec-Fetch-Dest`), it
///   says a top-level navigation: a page in an iframe belongs to a tab
///   whose own page already carries the snippet, and `fetch()` of an HTML
///   fragment must come back as the app wrote it;
/// - the answer is `200` with content type `text/html` (not a partial
///   content, a redirect, an error page of the gateway's, XHTML where the
///   snippet's markup would not parse the same), not marked as a download
///   (`Content-Disposition: attachment`: a saved file must be the app's);
/// - it carries no `Content-Encoding` other than `identity`: a compressed
///   body cannot be rewritten as it streams, so it is skipped whole (the
///   integrator drops `Accept-Encoding` upstream for navigations).
pub fn wants_injection(req: &RequestHeader, resp: &ResponseHeader) -> bool {
    resp.status.as_u16() == 200
        && accepts_html(req)
        && is_top_level_navigation(req)
        && media_type(resp).eq_ignore_ascii_case("text/html")
        && is_plain(resp)
        && !is_download(resp)
}

/// Whether `req` is a page the browser navigates to: its answer may get
/// the snippet, so it is asked for plain and whole (see
/// [`prepare_request`]).
pub fn is_navigation(req: &RequestHeader) -> bool {
    accepts_html(req) && is_top_level_navigation(req)
}

/// Ask the app for a navigation's page plain, whole and fresh: a
/// compressed body cannot take the snippet, a byte range of the app's page
/// addresses nothing in the page sent, and a 304 would bring back a stored
/// copy whose snippet names an older session.
pub fn prepare_request(req: &mut RequestHeader) {
    use http::header;
    for name in [
        header::ACCEPT_ENCODING,
        header::RANGE,
        header::IF_RANGE,
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
    ] {
        req.remove_header(&name);
    }
}

/// Fix the headers of an answer that gets the snippet (call it where
/// [`wants_injection`] said yes, in `upstream_response_filter`: see the
/// caveat below).
///
/// - `Content-Length` goes: the body grows by the snippet. (In pingora's
///   `upstream_response_filter` this makes pingora send an HTTP/1.1 body
///   chunked; pingora decides that before `response_filter`, so removed
///   there the body is sent close-delimited and the connection is not
///   reused.)
/// - `ETag` and `Last-Modified` go: they name the app's bytes, not these.
///   Worse, a browser revalidating with them gets a 304 from the app and
///   shows its stored copy, whose snippet names the session it was stored
///   under: the script sees a stale session and reloads, the reload
///   revalidates again, and the tab loops.
/// - `Accept-Ranges` goes: ranges of the app's bytes do not address this
///   body. Checksums of the app's bytes (`Content-MD5`, `Digest`,
///   `Content-Digest`, `Repr-Digest`) go for the same reason.
/// - `Cache-Control` becomes `private, no-cache` (unless it already says
///   `no-store`), and `Expires` goes: the body now holds the session's
///   CSRF token and reference, which no shared cache may keep, and a
///   stored copy must not be shown without asking again.
pub fn prepare_response(resp: &mut ResponseHeader) {
    use http::header;
    for name in [
        header::CONTENT_LENGTH,
        header::ETAG,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
        header::EXPIRES,
    ] {
        resp.remove_header(&name);
    }
    for name in ["content-md5", "digest", "content-digest", "repr-digest"] {
        resp.remove_header(name);
    }
    let no_store = values(resp, header::CACHE_CONTROL.as_str()).any(|v| {
        v.split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-store"))
    });
    if !no_store {
        // A static value of an allowed name: inserting cannot fail.
        let _ = resp.insert_header(header::CACHE_CONTROL, "private, no-cache");
    }
}

/// Every value of header `name`, as text (values that are not are skipped).
fn values<'a>(resp: &'a ResponseHeader, name: &str) -> impl Iterator<Item = &'a str> {
    resp.headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// `Accept` lists `text/html` (with a quality above zero).
fn accepts_html(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("text/html") && !refused
        })
}

/// A top-level navigation, as far as the browser says (`Sec-Fetch-*` are
/// set by browsers only, and absent from older ones).
fn is_top_level_navigation(req: &RequestHeader) -> bool {
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let mode_ok = header("sec-fetch-mode").is_none_or(|m| m.eq_ignore_ascii_case("navigate"));
    let dest_ok = header("sec-fetch-dest").is_none_or(|d| d.eq_ignore_ascii_case("document"));
    mode_ok && dest_ok
}

/// The answer's media type, without parameters.
fn media_type(resp: &ResponseHeader) -> &str {
    resp.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map_or("", str::trim)
}

/// No content coding, or only `identity`.
fn is_plain(resp: &ResponseHeader) -> bool {
    values(resp, http::header::CONTENT_ENCODING.as_str())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .all(|c| c.is_empty() || c.eq_ignore_ascii_case("identity"))
}

/// The app asks the browser to save the answer rather than show it.
fn is_download(resp: &ResponseHeader) -> bool {
    values(resp, http::header::CONTENT_DISPOSITION.as_str()).any(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("attachment"))
    })
}

// === impl Injector ===

/// One page's injector, fed the body chunk by chunk from pingora's
/// `response_body_filter`.
///
/// `Send + Sync`, so it can sit in the proxy's per-request context as it
/// is: lol_html's `send` rewriter is `Send` but not `Sync`, and the mutex
/// that makes it `Sync` is never locked (`chunk` takes `&mut self` and
/// reaches in with `Mutex::get_mut`).
pub struct Injector {
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    snippet: Bytes,
    /// Where `</body>` starts in the page (`NOWHERE` until seen); written
    /// once by the rewriter's handler.
    body_end: Arc<AtomicUsize>,
    /// How many bytes the rewriter has written out: as it changes nothing,
    /// the prefix of the page it is done with.
    settled: Arc<AtomicUsize>,
    /// Page bytes received so far.
    received: usize,
    /// Page bytes sent on so far (the snippet not counted).
    sent: usize,
    /// The page bytes between `sent` and `received`.
    held: BytesMut,
    placed: bool,
}

enum State {
    Rewriting(Box<send::HtmlRewriter<'static, Count>>),
    /// The rewriter failed: the rest passes through, the snippet goes last.
    PassThrough,
    Done,
}

/// The rewriter's output, counted and dropped (the page is sent from the
/// input; see the module docs).
struct Count(Arc<AtomicUsize>);

impl OutputSink for Count {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        self.0.fetch_add(chunk.len(), Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Injector").finish_non_exhaustive()
    }
}

impl Injector {
    /// An injector that puts `snippet` before the page's `</body>`.
    pub fn new(snippet: String) -> Injector {
        let body_end = Arc::new(AtomicUsize::new(NOWHERE));
        let settled = Arc::new(AtomicUsize::new(0));
        let handler = {
            let body_end = Arc::clone(&body_end);
            move |el: &mut send::Element<'_, '_>| {
                let body_end = Arc::clone(&body_end);
                if let Some(handlers) = el.end_tag_handlers() {
                    handlers.push(Box::new(move |end| {
                        // The first body's end only: the snippet goes in once.
                        let at = end.source_location().bytes().start;
                        let _ = body_end.compare_exchange(
                            NOWHERE,
                            at,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        Ok(())
                    }));
                }
                Ok(())
            }
        };
        let body: Selector = match "body".parse() {
            Ok(s) => s,
            // A constant selector lol_html supports; never taken.
            Err(_) => return Injector::failed(snippet, body_end, settled),
        };
        let settings = send::Settings::new_send()
            .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(MEMORY_LIMIT))
            .append_element_content_handler((
                Cow::Owned(body),
                send::ElementContentHandlers::default().element(handler),
            ));
        let rewriter = send::HtmlRewriter::new(settings, Count(Arc::clone(&settled)));
        Injector::with_state(
            State::Rewriting(Box::new(rewriter)),
            snippet,
            body_end,
            settled,
        )
    }

    fn failed(snippet: String, body_end: Arc<AtomicUsize>, settled: Arc<AtomicUsize>) -> Self {
        Injector::with_state(State::PassThrough, snippet, body_end, settled)
    }

    fn with_state(
        state: State,
        snippet: String,
        body_end: Arc<AtomicUsize>,
        settled: Arc<AtomicUsize>,
    ) -> Self {
        Injector {
            inner: Mutex::new(Inner {
                state,
                snippet: Bytes::from(snippet),
                body_end,
                settled,
                received: 0,
                sent: 0,
                held: BytesMut::new(),
                placed: false,
            }),
        }
    }

    /// Run one chunk of the page through: `*body` is replaced by what may
    /// be sent now (`None` when all of it is held back, a tag being cut),
    /// and at `end_of_stream` by the rest, snippet included if the page
    /// had no `</body>`. The shape of pingora's `response_body_filter`.
    ///
    /// Fails only when called with body bytes after the end; the chunk is
    /// then left as it was.
    pub fn chunk(&mut self, body: &mut Option<Bytes>, end_of_stream: bool) -> Result<(), TabError> {
        self.inner
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .chunk(body, end_of_stream)
    }

    /// Whether the snippet has been sent on.
    pub fn injected(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .placed
    }
}

impl Inner {
    fn chunk(&mut self, body: &mut Option<Bytes>, end: bool) -> Result<(), TabError> {
        let input = body.take().filter(|b| !b.is_empty());
        if matches!(self.state, State::Done) {
            if input.is_some() {
                *body = input;
                return Err(TabError::AfterEnd);
            }
            return Ok(());
        }
        let mut out = Vec::new();
        if let Some(chunk) = input {
            self.received += chunk.len();
            match &mut self.state {
                State::Rewriting(rw) => {
                    let written = rw.write(&chunk);
                    self.hold(chunk);
                    match written {
                        Ok(()) => self.release(&mut out),
                        Err(e) => self.give_up(&e, &mut out),
                    }
                }
                State::PassThrough => {
                    self.sent += chunk.len();
                    out.push(chunk);
                }
                State::Done => {}
            }
        }
        if end {
            if let State::Rewriting(rw) = std::mem::replace(&mut self.state, State::Done) {
                match (*rw).end() {
                    Ok(()) => self.release(&mut out),
                    Err(e) => self.give_up(&e, &mut out),
                }
            }
            // What the rewriter did not settle (an unclosed tag at the very
            // end), then the snippet if no `</body>` took it.
            self.flush_held(&mut out);
            if !self.placed {
                self.placed = true;
                out.push(self.snippet.clone());
            }
            self.state = State::Done;
        }
        *body = match out.len() {
            0 => None,
            1 => out.pop(),
            _ => Some(Bytes::from(out.concat())),
        };
        Ok(())
    }

    /// Keep `chunk` until the rewriter has settled it.
    fn hold(&mut self, chunk: Bytes) {
        self.held.extend_from_slice(&chunk);
    }

    /// Send on what the rewriter has settled, with the snippet where
    /// `</body>` starts.
    fn release(&mut self, out: &mut Vec<Bytes>) {
        let settled = self.settled.load(Ordering::Relaxed).min(self.received);
        let at = self.body_end.load(Ordering::Relaxed);
        if !self.placed && at != NOWHERE && at >= self.sent && at <= settled {
            self.send(at, out);
            self.placed = true;
            out.push(self.snippet.clone());
        }
        self.send(settled, out);
    }

    /// Send the held page bytes up to page offset `to`.
    fn send(&mut self, to: usize, out: &mut Vec<Bytes>) {
        if to > self.sent {
            let n = (to - self.sent).min(self.held.len());
            out.push(self.held.split_to(n).freeze());
            self.sent += n;
        }
    }

    /// Send everything held.
    fn flush_held(&mut self, out: &mut Vec<Bytes>) {
        if !self.held.is_empty() {
            self.sent += self.held.len();
            out.push(self.held.split().freeze());
        }
    }

    /// The rewriter failed: send what it settled (snippet included where
    /// it was found), then everything held; the rest passes through.
    fn give_up(&mut self, e: &lol_html::errors::RewritingError, out: &mut Vec<Bytes>) {
        tracing::warn!(error = %e, "the tab snippet goes at the end of this page: its HTML could not be followed");
        self.release(out);
        self.flush_held(out);
        self.state = State::PassThrough;
    }
}
