use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::events::{Next, Watch};
use super::*;
use crate::call::Call;
use crate::clock::TokioClock;
use crate::config::{Config, SessionStoreConfig, Sessions};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::session::{SessionManager, Token};
use crate::store::memory::MemoryStore;
use crate::store::{Store, StoreEvent};
use crate::subject::Subject;
use crate::users::User;

const SNIPPET: &str =
    "<script src=\"/_guise/tab.js\" data-session=\"0123456789ab\" defer></script>";

const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Companies</title><script>var end = \"</body>\"; // not the end</script></head>\n\
<body class=\"app\"><!-- </body> in a comment --><textarea></body></textarea>\
<p title=\"</body>\">Rows</p>\n</body>\n</html>\n";

/// Where the snippet belongs in `PAGE`: before the real end tag.
fn expected(page: &str, marker: &str) -> String {
    let at = page.rfind(marker).expect("marker in page");
    format!("{}{SNIPPET}{}", &page[..at], &page[at..])
}

/// Run `chunks` through a fresh injector as pingora would, `end_of_stream`
/// with the last one; everything sent, and what each call sent.
fn run(chunks: &[&[u8]]) -> (Vec<u8>, Vec<Option<Bytes>>) {
    let mut inj = Injector::new(SNIPPET.to_string());
    let mut sent = Vec::new();
    let mut calls = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut body = Some(Bytes::copy_from_slice(c));
        inj.chunk(&mut body, i + 1 == chunks.len()).unwrap();
        if let Some(b) = &body {
            sent.extend_from_slice(b);
        }
        calls.push(body);
    }
    if chunks.is_empty() {
        let mut body = None;
        inj.chunk(&mut body, true).unwrap();
        sent.extend_from_slice(body.as_deref().unwrap_or_default());
    }
    assert!(inj.injected());
    (sent, calls)
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle.as_bytes())
        .count()
}

// === Injector ===

#[test]
fn the_snippet_goes_before_the_body_end_tag_wherever_the_chunks_are_cut() {
    let want = expected(PAGE, "</body>\n</html>");
    let page = PAGE.as_bytes();
    for at in 0..=page.len() {
        let (sent, _) = run(&[&page[..at], &page[at..]]);
        assert_eq!(String::from_utf8(sent).unwrap(), want, "cut at byte {at}");
    }
    // Three pieces, the middle one short: `</body>` cut twice.
    let end = PAGE.rfind("</body>").unwrap();
    for a in end - 3..end + 8 {
        for b in a..end + 9 {
            let (sent, _) = run(&[&page[..a], &page[a..b], &page[b..]]);
            assert_eq!(String::from_utf8(sent).unwrap(), want, "cut at {a} and {b}");
        }
    }
}

#[test]
fn a_page_fed_a_byte_at_a_time_comes_out_whole_with_one_snippet() {
    let bytes: Vec<&[u8]> = PAGE.as_bytes().chunks(1).collect();
    let (sent, _) = run(&bytes);
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        expected(PAGE, "</body>\n</html>")
    );
}

#[test]
fn an_end_tag_in_a_script_comment_textarea_or_attribute_is_not_the_bodys() {
    let (sent, _) = run(&[PAGE.as_bytes()]);
    let sent = String::from_utf8(sent).unwrap();
    assert_eq!(count(sent.as_bytes(), SNIPPET), 1);
    assert!(
        sent.contains(&format!("{SNIPPET}</body>\n</html>")),
        "{sent}"
    );
    assert!(sent.contains("var end = \"</body>\"; // not the end</script>"));
}

#[test]
fn an_uppercase_body_end_tag_is_found() {
    let page = "<HTML><BODY><P>Hi</P></BODY></HTML>";
    let (sent, _) = run(&[page.as_bytes()]);
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        format!("<HTML><BODY><P>Hi</P>{SNIPPET}</BODY></HTML>")
    );
}

#[test]
fn a_document_without_a_body_element_gets_the_snippet_at_its_end() {
    for page in [
        "<!doctype html><title>x</title><p>no body tags",
        "<html><head></head></html>",
        "<p>stray</p></body>",
        "",
    ] {
        let (sent, _) = run(&[page.as_bytes()]);
        assert_eq!(String::from_utf8(sent).unwrap(), format!("{page}{SNIPPET}"));
    }
    // A body whose end tag never comes (cut off, or left implicit).
    let (sent, _) = run(&[b"<body><p>open", b" still"]);
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        format!("<body><p>open still{SNIPPET}")
    );
}

#[test]
fn the_snippet_goes_in_exactly_once_even_with_two_bodies() {
    let page = "<body>a</body><body>b</body>";
    let (sent, _) = run(&[page.as_bytes()]);
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        format!("<body>a{SNIPPET}</body><body>b</body>")
    );
}

#[test]
fn the_pages_bytes_pass_unchanged_even_when_they_are_not_utf8() {
    let mut page =
        b"<html><body><p data-x='\xff\xfe'>caf\xe9 \xc3(</p><BR/><img src=x alt=a>".to_vec();
    page.extend_from_slice(b"</body></html>");
    let at = page.windows(7).position(|w| w == b"</body>").unwrap();
    let mut want = page[..at].to_vec();
    want.extend_from_slice(SNIPPET.as_bytes());
    want.extend_from_slice(&page[at..]);
    for cut in 0..page.len() {
        let (sent, _) = run(&[&page[..cut], &page[cut..]]);
        assert_eq!(sent, want, "cut at {cut}");
    }
}

#[test]
fn the_page_streams_through_holding_back_only_a_cut_tag() {
    let mut page = String::from("<html><body><table>");
    while page.len() < 512 * 1024 {
        page.push_str("<tr data-company-id=\"co-1\"><td>Acme</td><td>Lead</td></tr>\n");
    }
    page.push_str("</table></body></html>");
    let chunks: Vec<&[u8]> = page.as_bytes().chunks(8 * 1024).collect();
    let (sent, calls) = run(&chunks);
    let mut received = 0;
    let mut out = 0;
    for (i, c) in calls.iter().enumerate().take(calls.len() - 1) {
        received += chunks[i].len();
        out += c.as_ref().map_or(0, Bytes::len);
        assert!(
            received - out < 128,
            "after chunk {i} the injector holds {} bytes",
            received - out
        );
    }
    assert_eq!(count(&sent, SNIPPET), 1);
    assert_eq!(sent.len(), page.len() + SNIPPET.len());
}

/// Run `page` in 16 KiB chunks; what was sent, and the most the injector
/// held back at any time.
fn run_big(page: &str) -> (Vec<u8>, usize) {
    let mut inj = Injector::new(SNIPPET.to_string());
    let (mut sent, mut received, mut most) = (Vec::new(), 0, 0);
    let chunks: Vec<&[u8]> = page.as_bytes().chunks(16 * 1024).collect();
    for (i, c) in chunks.iter().enumerate() {
        let mut body = Some(Bytes::copy_from_slice(c));
        inj.chunk(&mut body, i + 1 == chunks.len()).unwrap();
        received += c.len();
        sent.extend_from_slice(body.as_deref().unwrap_or_default());
        most = most.max(received - sent.len().min(received));
    }
    (sent, most)
}

#[test]
fn a_huge_tag_elsewhere_streams_through_without_being_held() {
    let mut page = String::from("<html><body><img src=\"data:image/png;base64,");
    page.push_str(&"A".repeat(600 * 1024));
    page.push_str("\"><p>after</p></body></html>");
    let (sent, most) = run_big(&page);
    // (Compared without printing 600 KiB on failure.)
    let at = sent
        .windows(SNIPPET.len())
        .position(|w| w == SNIPPET.as_bytes());
    let end = page.len() - "</body></html>".len();
    assert_eq!((sent.len(), at), (page.len() + SNIPPET.len(), Some(end)));
    assert!(most < 32 * 1024, "held back {most} bytes");
}

#[test]
fn a_body_tag_too_large_to_follow_leaves_the_page_whole_with_the_snippet_at_the_end() {
    let mut page = String::from("<html><body data-state=\"");
    page.push_str(&"A".repeat(600 * 1024));
    page.push_str("\"><p>after</p></body></html>");
    let (sent, most) = run_big(&page);
    let at = sent
        .windows(SNIPPET.len())
        .position(|w| w == SNIPPET.as_bytes());
    assert_eq!(
        (sent.len(), at),
        (page.len() + SNIPPET.len(), Some(page.len()))
    );
    assert!(sent == format!("{page}{SNIPPET}").as_bytes());
    assert!(most < 512 * 1024, "held back {most} bytes");
}

#[test]
fn empty_and_missing_chunks_change_nothing() {
    let mut inj = Injector::new(SNIPPET.to_string());
    let mut out = Vec::new();
    for (chunk, end) in [
        (None, false),
        (Some(Bytes::new()), false),
        (Some(Bytes::from_static(b"<body>x</bo")), false),
        (None, false),
        (Some(Bytes::from_static(b"dy>")), false),
        (None, true),
    ] {
        let mut body = chunk;
        inj.chunk(&mut body, end).unwrap();
        out.extend_from_slice(body.as_deref().unwrap_or_default());
    }
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("<body>x{SNIPPET}</body>")
    );
}

#[test]
fn bytes_after_the_end_are_refused_and_left_alone() {
    let mut inj = Injector::new(SNIPPET.to_string());
    let mut body = Some(Bytes::from_static(b"<body></body>"));
    inj.chunk(&mut body, true).unwrap();
    let mut late = Some(Bytes::from_static(b"late"));
    assert_eq!(inj.chunk(&mut late, false), Err(TabError::AfterEnd));
    assert_eq!(late.as_deref(), Some(&b"late"[..]));
    let mut none = None;
    assert_eq!(inj.chunk(&mut none, true), Ok(()));
    assert!(none.is_none());
}

#[test]
fn the_injector_can_live_in_the_proxy_context() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Injector>();
}

// === wants_injection, prepare_response ===

fn req(headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", b"/companies", None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

fn resp(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

const NAVIGATION: &[(&str, &str)] = &[
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
];
const HTML: &[(&str, &str)] = &[("content-type", "text/html; charset=utf-8")];

#[test]
fn a_navigation_to_a_plain_html_page_gets_the_snippet() {
    assert!(wants_injection(&req(NAVIGATION), &resp(200, HTML)));
    // Older browsers send no Sec-Fetch headers.
    assert!(wants_injection(
        &req(&[("accept", "text/html")]),
        &resp(200, &[("content-type", "TEXT/HTML")])
    ));
    assert!(wants_injection(
        &req(NAVIGATION),
        &resp(
            200,
            &[
                ("content-type", "text/html"),
                ("content-encoding", "identity"),
                ("content-disposition", "inline"),
            ]
        )
    ));
}

#[test]
fn requests_that_are_not_top_level_navigations_are_left_alone() {
    for headers in [
        &[("accept", "*/*")][..],
        &[("accept", "application/json")][..],
        &[][..],
        &[("accept", "text/html;q=0, */*")][..],
        // fetch() or XHR asking for an HTML fragment.
        &[("accept", "text/html"), ("sec-fetch-mode", "cors")][..],
        &[("accept", "text/html"), ("sec-fetch-mode", "same-origin")][..],
        // A page inside an iframe.
        &[
            ("accept", "text/html"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-dest", "iframe"),
        ][..],
    ] {
        assert!(
            !wants_injection(&req(headers), &resp(200, HTML)),
            "{headers:?}"
        );
    }
}

#[test]
fn answers_that_are_not_whole_plain_html_pages_are_left_alone() {
    for (status, headers) in [
        (404, HTML),
        (500, HTML),
        (206, HTML),
        (304, HTML),
        (302, HTML),
        (200, &[("content-type", "application/json")][..]),
        (200, &[("content-type", "application/xhtml+xml")][..]),
        (200, &[("content-type", "text/plain")][..]),
        (200, &[][..]),
        (
            200,
            &[("content-type", "text/html"), ("content-encoding", "gzip")][..],
        ),
        (
            200,
            &[
                ("content-type", "text/html"),
                ("content-encoding", "identity, br"),
            ][..],
        ),
        (
            200,
            &[
                ("content-type", "text/html"),
                (
                    "content-disposition",
                    "attachment; filename=\"report.html\"",
                ),
            ][..],
        ),
    ] {
        assert!(
            !wants_injection(&req(NAVIGATION), &resp(status, headers)),
            "{status} {headers:?}"
        );
    }
}

#[test]
fn preparing_drops_what_names_the_apps_bytes_and_keeps_the_page_private() {
    let mut r = resp(
        200,
        &[
            ("content-type", "text/html"),
            ("content-length", "1234"),
            ("etag", "\"abc\""),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("accept-ranges", "bytes"),
            ("content-digest", "sha-256=:x:"),
            ("expires", "Wed, 21 Oct 2035 07:28:00 GMT"),
            ("cache-control", "public, max-age=600"),
            ("set-cookie", "app=1"),
        ],
    );
    prepare_response(&mut r);
    for gone in [
        "content-length",
        "etag",
        "last-modified",
        "accept-ranges",
        "content-digest",
        "expires",
    ] {
        assert!(r.headers.get(gone).is_none(), "{gone} is still there");
    }
    assert_eq!(r.headers["cache-control"], "private, no-cache");
    assert_eq!(r.headers["content-type"], "text/html");
    assert_eq!(r.headers["set-cookie"], "app=1");

    let mut r = resp(200, &[("cache-control", "no-store, private")]);
    prepare_response(&mut r);
    assert_eq!(r.headers["cache-control"], "no-store, private");
}

// === snippet ===

fn view<'a>(banner: Option<Banner<'a>>) -> TabView<'a> {
    TabView {
        session_ref: "0123456789ab",
        csrf_token: "tok-123",
        user_name: "Anna Partner",
        banner,
    }
}

#[test]
fn an_ordinary_session_gets_the_script_and_no_banner() {
    let s = snippet(&view(None));
    assert_eq!(
        s,
        "<script src=\"&#x2f;_guise&#x2f;tab.js\" data-session=\"0123456789ab\" \
         data-user=\"Anna Partner\" defer></script>"
            .replace("&#x2f;", "/")
    );
}

#[test]
fn the_banner_names_the_user_and_partner_and_posts_back_with_the_csrf_token() {
    let s = snippet(&view(Some(Banner {
        user_name: "Anna Partner",
        partner_name: Some("Acme Partners".into()),
        stop_path: "/_guise/impersonation/stop",
    })));
    assert!(s.starts_with("<script src=\"/_guise/tab.js\""), "{s}");
    assert!(
        s.contains("<guise-banner data-guise-banner style=\""),
        "{s}"
    );
    assert!(s.contains("position:fixed!important"), "{s}");
    assert!(s.contains("z-index:2147483647!important"), "{s}");
    assert!(s.contains("<template shadowrootmode=\"closed\">"), "{s}");
    assert!(
        s.contains("<link rel=\"stylesheet\" href=\"/_guise/tab.css\">"),
        "{s}"
    );
    assert!(
        s.contains(
            "Viewing as <strong>Anna Partner</strong> (Acme Partners) &#x2014; \
             <form method=\"post\" action=\"&#x2f;_guise&#x2f;impersonation&#x2f;stop\">"
        ),
        "{s}"
    );
    assert!(
        s.contains(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"tok-123\">",
            crate::csrf::FIELD
        )),
        "{s}"
    );
    assert!(
        s.contains("<button type=\"submit\" data-guise-stop>Return to admin</button>"),
        "{s}"
    );
    assert!(s.ends_with("</template></guise-banner>"), "{s}");
    assert!(s.is_ascii());

    let no_partner = snippet(&view(Some(Banner {
        user_name: "Anna",
        partner_name: None,
        stop_path: "/stop",
    })));
    assert!(
        no_partner.contains("<strong>Anna</strong> &#x2014; <form"),
        "{no_partner}"
    );
}

#[test]
fn names_are_escaped_so_they_cannot_add_markup() {
    let evil = "<script>alert(1)</script>\" onload=\"x";
    let s = snippet(&TabView {
        session_ref: "0123456789ab",
        csrf_token: "\"><b>",
        user_name: evil,
        banner: Some(Banner {
            user_name: evil,
            partner_name: Some("<img src=x onerror=alert(2)>".into()),
            stop_path: "/stop\"><script>",
        }),
    });
    assert_eq!(count(s.as_bytes(), "<script"), 1, "{s}");
    assert!(!s.contains("<img"), "{s}");
    assert!(!s.contains("<b>"), "{s}");
    assert!(!s.contains("\" onload=\""), "{s}");
    assert!(s.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;&quot; onload=&quot;x"));
}

#[test]
fn names_outside_ascii_become_character_references() {
    let s = snippet(&TabView {
        user_name: "José Ñandú 👩",
        ..view(None)
    });
    assert!(s.is_ascii(), "{s}");
    assert!(
        s.contains("data-user=\"Jos&#xE9; &#xD1;and&#xFA; &#x1F469;\""),
        "{s}"
    );
}

// === assets ===

#[test]
fn the_tab_script_parses() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tab/tab.js");
    let Some(out) = node(&["--check", js.to_str().unwrap()]) else {
        return;
    };
    assert!(
        out.status.success(),
        "node --check tab.js: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_tab_script_behaves_in_every_case_of_its_harness() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/tab");
    let harness = dir.join("tab_harness.js");
    let js = dir.join("tab.js");
    let Some(out) = node(&[harness.to_str().unwrap(), js.to_str().unwrap()]) else {
        return;
    };
    assert!(
        out.status.success(),
        "tab_harness.js: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_tab_script_has_no_eval_and_reads_its_tag_at_the_top_level() {
    let js = include_str!("tab.js");
    for banned in ["eval(", "new Function", "innerHTML", "document.write"] {
        assert!(!js.contains(banned), "tab.js uses {banned}");
    }
    let at = js.find("document.currentScript").unwrap();
    assert!(
        js[..at].matches("function").count() == 1,
        "document.currentScript is read in the outer function only"
    );
}

/// `node` with `args`, or `None` (and a note) where node is not installed.
fn node(args: &[&str]) -> Option<std::process::Output> {
    match std::process::Command::new("node").args(args).output() {
        Ok(out) => Some(out),
        Err(e) => {
            println!("node is not available ({e}); skipping the tab.js check");
            None
        }
    }
}

// === a real pingora session over an in-memory pipe ===

const YAML: &str = "\
listeners:
  http: 127.0.0.1:1
upstream:
  address: 127.0.0.1:2
identity:
  signing_key_env: GUISE_TEST_KEY
";

fn live() -> Live {
    let env = |name: &str| (name == "GUISE_TEST_KEY").then(|| "k".repeat(32));
    let config = Config::parse(YAML, "test.yaml", Path::new("."), &env).expect("config");
    Live::build(config).expect("live")
}

/// A pingora session reading `request` from one end of an in-memory pipe;
/// the other end is the client's.
async fn session_for(request: String) -> (Session, DuplexStream) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client.write_all(request.as_bytes()).await.unwrap();
    let mut s = Session::new_h1(Box::new(server));
    assert!(s.read_request().await.unwrap());
    (s, client)
}

/// Read from `client` until `buf` holds `needle`, within a deadline.
async fn read_until(client: &mut DuplexStream, buf: &mut Vec<u8>, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(buf, needle) == 0 {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, client.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no {needle:?} within the deadline; got {:?}",
                    String::from_utf8_lossy(buf)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

// === assets over a real pingora session ===

async fn get_asset(name: &str, extra: &str) -> String {
    let request = format!("GET /_guise/{name} HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n");
    let (mut s, mut client) = session_for(request).await;
    let live = live();
    asset(&mut s, &live.replies, name).await.unwrap();
    drop(s);
    let mut buf = Vec::new();
    client.read_to_end(&mut buf).await.unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn the_assets_are_served_with_their_types_and_revalidated_by_etag() {
    let js = get_asset("tab.js", "").await;
    let (head, body) = js.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/javascript; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert_eq!(body, include_str!("tab.js"));
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap()
        .to_string();

    let again = get_asset("tab.js", &format!("If-None-Match: W/{etag}\r\n")).await;
    let (head, body) = again.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    assert!(body.is_empty());

    let css = get_asset("tab.css", "If-None-Match: \"other\"\r\n").await;
    assert!(css.starts_with("HTTP/1.1 200"), "{css}");
    assert!(
        css.to_ascii_lowercase()
            .contains("content-type: text/css; charset=utf-8"),
        "{css}"
    );
    assert!(css.ends_with(include_str!("tab.css")));

    let missing = get_asset("tab.map", "Accept: application/json\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}
// === the event stream over a real pingora session ===

fn settings() -> Sessions {
    Sessions {
        store: SessionStoreConfig::Memory,
        cookie_name: "guise_session".into(),
        idle_timeout: Duration::from_secs(600),
        absolute_lifetime: Duration::from_secs(3600),
        refresh_interval: Duration::from_secs(60),
        cache_ttl: Duration::from_secs(30),
        stale_grace: Duration::from_secs(1),
        cache_capacity: 1000,
        redis_connect_timeout: Duration::from_millis(100),
        redis_response_timeout: Duration::from_millis(100),
    }
}

fn manager() -> (Arc<SessionManager>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let m = SessionManager::new(
        store.clone(),
        settings(),
        Metrics::new(),
        Arc::new(TokioClock::starting_at(1_800_000_000)),
    );
    (m, store)
}

fn events_request(token: &Token, query: &str) -> String {
    format!(
        "GET /_guise/events{query} HTTP/1.1\r\nHost: app.test\r\nAccept: text/event-stream\r\n\
         Cookie: other=1; guise_session={}\r\n\r\n",
        token.as_str()
    )
}

/// Serve `/_guise/events` for `request` on its own task, with `subject`.
fn serve_events(
    mut s: Session,
    sessions: Arc<SessionManager>,
    subject: Option<Subject>,
) -> tokio::task::JoinHandle<pingora::Result<()>> {
    tokio::spawn(async move {
        let live = live();
        let call = Call {
            live: &live,
            peer: Peer {
                https: false,
                ip: None,
            },
            subject: subject.as_ref(),
        };
        events(&mut s, call, &sessions).await
    })
}

async fn signed_in(sessions: &SessionManager) -> (Token, Subject) {
    let (token, active) = sessions
        .create("u-ada", None, BTreeMap::new())
        .await
        .unwrap();
    let user = Arc::new(User::new("u-ada", "Ada", "ada@example.com"));
    (token, Subject::own(user, active))
}

#[tokio::test]
async fn the_stream_says_hello_at_once_and_ended_with_the_reason_when_revoked() {
    let (sessions, _) = manager();
    let (token, subject) = signed_in(&sessions).await;
    let reference = subject.session.record.reference.clone();
    let key = subject.session.key.clone();
    let (s, mut client) = session_for(events_request(&token, "")).await;
    let task = serve_events(s, sessions.clone(), Some(subject));

    // The hello arrives while the stream is open: pingora flushed it.
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, "\n\n").await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("x-accel-buffering: no"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(
        body.contains("event: hello\ndata: {\"session\":\""),
        "{body}"
    );
    assert!(body.contains(&reference), "{body}");
    assert!(!task.is_finished());

    sessions
        .revoke_because(&key, Some("impersonation started in another tab"))
        .await
        .unwrap();
    read_until(&mut client, &mut buf, "0\r\n\r\n").await;
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(
        text.contains(
            "event: ended\ndata: {\"reason\":\"impersonation started in another tab\"}\n\n"
        ),
        "{text}"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the stream ends after `ended`")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_stale_tab_gets_its_hello_and_the_end_at_once() {
    let (sessions, _) = manager();
    let (token, subject) = signed_in(&sessions).await;
    let (s, mut client) = session_for(events_request(&token, "?session=ffffffffffff")).await;
    let task = serve_events(s, sessions, Some(subject));
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, "0\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&buf).contains("event: hello"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn without_a_session_the_stream_is_refused_with_401() {
    let (sessions, _) = manager();
    let (s, mut client) = session_for(events_request(&Token::generate(), "")).await;
    let task = serve_events(s, sessions, None);
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, "}").await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("\"error\":\"login_required\""), "{text}");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_session_revoked_before_the_stream_subscribed_is_refused() {
    let (sessions, _) = manager();
    let (token, subject) = signed_in(&sessions).await;
    // Revoked after the pipeline found it, before the handler ran.
    sessions.revoke(&subject.session.key).await.unwrap();
    let (s, mut client) = session_for(events_request(&token, "")).await;
    let task = serve_events(s, sessions, Some(subject));
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, "}").await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 401"));
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_stream_ends_quietly_when_the_client_goes_away() {
    let (sessions, _) = manager();
    let (token, subject) = signed_in(&sessions).await;
    let (s, mut client) = session_for(events_request(&token, "")).await;
    let task = serve_events(s, sessions, Some(subject));
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, "event: hello").await;
    drop(client);
    // The next keep-alive finds the client gone (the paused clock runs on
    // while everything waits).
    tokio::time::timeout(KEEP_ALIVE * 3, task)
        .await
        .expect("the stream ends after the client left")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_events_future_can_run_in_a_proxy_hook() {
    fn send<T: Send>(_: &T) {}
    let (sessions, _) = manager();
    let (s, _client) = session_for(events_request(&Token::generate(), "")).await;
    let mut s = s;
    let live = live();
    let call = Call {
        live: &live,
        peer: Peer {
            https: false,
            ip: None,
        },
        subject: None,
    };
    let fut = events(&mut s, call, &sessions);
    send(&fut);
}

// === the watch, on a paused clock ===

#[tokio::test(start_paused = true)]
async fn the_watch_ends_on_this_sessions_revocation_only() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let (_, other) = signed_in(&sessions).await;
    let mut watch = Watch::new(&sessions, subject.session.key.clone(), store.subscribe());
    sessions.revoke(&other.session.key).await.unwrap();
    // Another session's revocation is not this one's.
    assert_eq!(watch.next().await, Next::Poll);
    sessions
        .revoke_because(&subject.session.key, Some("  "))
        .await
        .unwrap();
    assert_eq!(watch.next().await, Next::Ended(DEFAULT_REASON.into()));
}

#[tokio::test(start_paused = true)]
async fn the_watch_polls_every_second_and_keeps_alive_every_fifteen() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let started = tokio::time::Instant::now();
    let mut watch = Watch::new(&sessions, subject.session.key.clone(), store.subscribe());
    let mut polls = 0;
    loop {
        match watch.next().await {
            Next::Poll => polls += 1,
            Next::KeepAlive => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started.elapsed(), KEEP_ALIVE);
    assert_eq!(polls, KEEP_ALIVE.as_secs() - 1);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_lost_in_transit_is_found_on_resync() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let key = subject.session.key.clone();
    let mut watch = Watch::new(&sessions, key.clone(), store.subscribe());
    // Deleted on another node while Redis pub/sub was down: no event came.
    store.delete_session(&key).await.unwrap();
    store.publish(&StoreEvent::Resync).await.unwrap();
    assert_eq!(watch.next().await, Next::Ended("your session ended".into()));
}

#[tokio::test(start_paused = true)]
async fn a_revocation_lost_without_a_resync_is_found_at_the_next_keep_alive() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let key = subject.session.key.clone();
    let mut watch = Watch::new(&sessions, key.clone(), store.subscribe());
    store.delete_session(&key).await.unwrap();
    let started = tokio::time::Instant::now();
    let ended = loop {
        match watch.next().await {
            Next::Poll => continue,
            other => break other,
        }
    };
    assert_eq!(ended, Next::Ended("your session ended".into()));
    assert_eq!(started.elapsed(), KEEP_ALIVE);
}

#[tokio::test(start_paused = true)]
async fn a_session_past_its_absolute_lifetime_ends_at_a_keep_alive() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let mut watch = Watch::new(&sessions, subject.session.key.clone(), store.subscribe());
    tokio::time::advance(settings().absolute_lifetime).await;
    let ended = loop {
        match watch.next().await {
            Next::Poll | Next::KeepAlive => continue,
            other => break other,
        }
    };
    assert_eq!(ended, Next::Ended("your session ended".into()));
}

#[tokio::test(start_paused = true)]
async fn the_watch_does_not_keep_the_session_alive() {
    let (sessions, store) = manager();
    let (_, subject) = signed_in(&sessions).await;
    let key = subject.session.key.clone();
    let before = store.get_session(&key).await.unwrap().unwrap().last_seen;
    let mut watch = Watch::new(&sessions, key.clone(), store.subscribe());
    for _ in 0..8 {
        while watch.next().await != Next::KeepAlive {}
    }
    let after = store.get_session(&key).await.unwrap().unwrap().last_seen;
    assert_eq!(
        before, after,
        "two minutes of keep-alives touched the session"
    );
}
