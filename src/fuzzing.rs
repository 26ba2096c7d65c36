//! Harness entry points shared by the cargo-fuzz targets (`fuzz/`) and the
//! seed replay test (`tests/fuzz_seeds.rs`).
//!
//! Each `check_*` function takes arbitrary bytes, feeds them to one parser
//! the gateway exposes to clients (or to its operator, for the config), and
//! **panics when an invariant breaks**: that is how libFuzzer learns about a
//! failure, so here, unlike the rest of the library, panicking is the
//! purpose. The invariants are the security properties the parsers promise
//! (normal-form targets an upstream cannot read as another path, no
//! client-sent identity header surviving, no session cookie reaching the
//! upstream), not only "does not crash".
//!
//! The fuzz crate needs the nightly toolchain; keeping the checks here lets
//! the stable test suite replay every committed seed through exactly the
//! same code, so a regression shows up in `cargo test` too.
//!
//! Input layouts (chosen so seeds stay readable text files):
//! - [`check_request_target`]: `METHOD SP TARGET [LF HOST]`;
//! - [`check_identity_strip`]: header lines `name:value`, split on LF;
//! - [`check_cookies`]: one `Cookie` header value per LF-separated line;
//! - [`check_config`]: the YAML file itself;
//! - [`check_endpoint_json`]: one JSON body, tried as every endpoint's;
//! - [`check_partner_import`]: a partner CSV file (a CRM export).

// A harness: a broken invariant must panic so libFuzzer records the input.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::admin::{NewUser, Patch};
use crate::auth::login::Credentials;
use crate::config::Config;
use crate::identity::{reads_as_prefixed, strip_client_headers, IdentityHeaders, Signer};
use crate::session::cookie;
use crate::target::{self, Target};

/// The identity header prefix the targets strip and sign with (the default).
pub const PREFIX: &str = "x-guise-";

/// The session cookie names the gateway strips before proxying: plain HTTP
/// and HTTPS (`__Host-`) spellings of the default `cookie_name`.
pub const SESSION_COOKIES: [&str; 2] = ["guise_session", "__Host-guise_session"];

/// The signing key the config target's environment hands out: 32+ bytes so
/// a config gets past the key check and on to everything after it.
pub const FUZZ_KEY: &str = "fuzz-signing-key-0123456789abcdef0123456789";

/// Request target and Host: [`target::normalise`] and [`target::check`].
///
/// Input: `METHOD SP TARGET [LF HOST]`. `normalise` is also run on the
/// whole input, so bytes the split would hide (LF, leading spaces) reach it.
pub fn check_request_target(data: &[u8]) {
    check_normalise(data);
    let (line, host) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Some(sp) = line.iter().position(|b| *b == b' ') else {
        return;
    };
    let (method, raw) = (&line[..sp], &line[sp + 1..]);
    check_normalise(raw);

    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    // `RequestHeader::build` is what pingora's parser leaves us with; what it
    // refuses never reaches the gateway.
    let Ok(mut req) = RequestHeader::build(method, raw, None) else {
        return;
    };
    if let Some(host) = host {
        let Ok(value) = HeaderValue::from_bytes(host) else {
            return;
        };
        if req.insert_header(http::header::HOST, value).is_err() {
            return;
        }
    }
    for allowed in [Vec::new(), vec!["gw.test".to_string()]] {
        let mut r = req.clone();
        if let Ok(kind) = target::check(&mut r, &allowed) {
            check_passed_target(&req, &r, kind, &allowed);
        }
    }
}

/// The invariants of `normalise`'s answer for `input` (see
/// [`check_request_target`]).
fn check_normalise(input: &[u8]) {
    let Ok(v) = target::normalise(input) else {
        return;
    };
    let shown = String::from_utf8_lossy(input);
    assert_eq!(
        target::normalise(&v).as_ref(),
        Ok(&v),
        "normalise is not idempotent on {shown:?}"
    );
    // `normalise` takes an origin-form target; its one caller guarantees the
    // leading `/`. It must keep it, and never invent one.
    assert_eq!(
        v.first() == Some(&b'/'),
        input.first() == Some(&b'/'),
        "normalise changed the leading `/` of {shown:?}"
    );
    assert!(
        v.iter().all(|b| (0x21..0x7f).contains(b)),
        "normalise let a byte outside visible ASCII through in {shown:?}"
    );
    check_normal_path(path_of(&v), &shown);
    if input.first() == Some(&b'/') {
        let path = String::from_utf8_lossy(path_of(&v));
        signable("GET", &path);
    }
}

/// What a normal-form path must be: no empty or dot segment, no `;`, no
/// escape a server decodes into a separator or another escape, and the same
/// segments after one round of percent-decoding (what an upstream routes on).
fn check_normal_path(path: &[u8], shown: &str) {
    assert!(
        !path.windows(2).any(|w| w == b"//"),
        "`//` in the normal form of {shown:?}"
    );
    assert!(
        !path.contains(&b';') && !path.contains(&b'\\'),
        "`;` or `\\` in the normal form of {shown:?}"
    );
    let upper = path.to_ascii_uppercase();
    for bad in [&b"%2F"[..], b"%5C", b"%25", b"%00", b"%3B"] {
        assert!(
            !upper.windows(3).any(|w| w == bad),
            "{} in the normal form of {shown:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(
        !path.split(|b| *b == b'/').any(|s| s == b"." || s == b".."),
        "dot segment in the normal form of {shown:?}"
    );
    let decoded = percent_decode(path);
    assert_eq!(
        decoded.iter().filter(|b| **b == b'/').count(),
        path.iter().filter(|b| **b == b'/').count(),
        "decoding the normal form of {shown:?} adds a `/`"
    );
    assert!(
        !decoded
            .iter()
            .any(|b| matches!(b, b'\\' | b';' | b'%') || *b < 0x20 || *b == 0x7f),
        "decoding the normal form of {shown:?} yields a separator, escape or control"
    );
    assert!(
        !decoded
            .split(|b| *b == b'/')
            .any(|s| s == b"." || s == b".."),
        "decoding the normal form of {shown:?} yields a dot segment"
    );
}

/// A request `check` let through, against the request before it.
fn check_passed_target(
    before: &RequestHeader,
    after: &RequestHeader,
    kind: Target,
    allowed: &[String],
) {
    let shown = String::from_utf8_lossy(before.raw_path()).into_owned();
    if let Some(host) = after.headers.get(http::header::HOST) {
        assert!(
            target::check_host(host.as_bytes()).is_ok(),
            "bad Host passed for {shown:?}"
        );
        if !allowed.is_empty() {
            let h = String::from_utf8_lossy(host.as_bytes()).to_ascii_lowercase();
            let bare = h.split(':').next().unwrap_or(&h);
            assert!(
                allowed.iter().any(|a| *a == h || a == bare),
                "Host {h:?} passed though only {allowed:?} are served"
            );
        }
    }
    match kind {
        Target::Asterisk => {
            assert_eq!(
                after.method,
                http::Method::OPTIONS,
                "`*` passed for {}",
                after.method
            );
            assert_eq!(after.raw_path(), b"*");
        }
        Target::Path => {
            let raw = after.raw_path();
            assert_eq!(raw.first(), Some(&b'/'), "{shown:?} passed as {raw:?}");
            assert_eq!(
                target::normalise(raw).as_deref(),
                Ok(raw),
                "{shown:?} passed but is not in normal form afterwards"
            );
            // Routing and signing read `uri`; the upstream gets the raw
            // target. They must be the same bytes.
            let pq = after
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("");
            assert_eq!(
                pq.as_bytes(),
                raw,
                "{shown:?}: the URI the gateway decides on is not the target it sends"
            );
            signable(after.method.as_str(), after.uri.path());
        }
    }
}

/// The path part (before `?`) of a target.
fn path_of(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len());
    &target[..end]
}

/// One round of percent-decoding, as an upstream would do it; malformed
/// escapes stay as they are.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// A path that passed must be signable: otherwise a signed-in user's request
/// fails at the last stage instead of being refused with the reason.
fn signable(method: &str, path: &str) {
    let identity = IdentityHeaders::for_user("u", "u@x", &["user"], "ref")
        .expect("fixed identity headers are valid");
    let signed =
        Signer::new(FUZZ_KEY.as_bytes(), PREFIX).signed_headers(&identity, method, path, 0);
    assert!(
        signed.is_ok(),
        "a target that passed cannot be signed: {method} {path:?}: {signed:?}"
    );
}

/// Client-sent identity headers: [`strip_client_headers`].
///
/// Input: header lines `name:value` split on LF (a line without `:` is a
/// name with an empty value). Headers pingora refuses are skipped.
pub fn check_identity_strip(data: &[u8]) {
    let mut req = RequestHeader::build("GET", b"/", None).expect("a fixed request line is valid");
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        let (name, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) else {
            continue;
        };
        // Keep the client's spelling: pingora keeps it for the wire, and
        // that spelling is what an upstream reads.
        if req
            .append_header(bytes::Bytes::copy_from_slice(name), v.clone())
            .is_err()
        {
            continue;
        }
        if !reads_as_prefixed(n.as_str().as_bytes(), PREFIX.as_bytes()) {
            expected.push((n.as_str().to_string(), v.as_bytes().to_vec()));
        }
    }
    strip_client_headers(&mut req, PREFIX);

    let mut left: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    for (name, _) in &left {
        assert!(
            !reads_as_prefixed(name.as_bytes(), PREFIX.as_bytes()),
            "{name:?} survived stripping"
        );
    }
    // Every other header is still there, every value, in order per name.
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    left.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(left, expected, "stripping touched headers it should keep");

    // The names the upstream gets are the wire spellings pingora keeps.
    let mut wire = Vec::new();
    req.header_to_h1_wire(&mut wire);
    for line in wire.split(|b| *b == b'\n') {
        let name = line.split(|b| *b == b':').next().unwrap_or(line);
        assert!(
            !reads_as_prefixed(name, PREFIX.as_bytes()),
            "{:?} is still on the wire after stripping",
            String::from_utf8_lossy(name)
        );
    }
}

/// The session cookie: [`cookie::pairs`], [`cookie::read`],
/// [`cookie::read_token`] and [`cookie::strip`].
///
/// Input: one `Cookie` header value per LF-separated line, any bytes a
/// header value may hold (non-UTF-8 included). Lines pingora refuses are
/// skipped.
pub fn check_cookies(data: &[u8]) {
    let mut req = RequestHeader::build("GET", b"/", None).expect("a fixed request line is valid");
    for line in data.split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(line) {
            let _ = req.append_header(http::header::COOKIE, v);
        }
    }
    let before: Vec<(String, String)> = cookie::pairs(&req).collect();
    let tokens_before: Vec<_> = SESSION_COOKIES
        .iter()
        .map(|n| {
            let _ = cookie::read(&req, n);
            cookie::read_token(&req, n)
        })
        .collect();

    let mut stripped = req.clone();
    cookie::strip(&mut stripped, &SESSION_COOKIES);
    let after: Vec<(String, String)> = cookie::pairs(&stripped).collect();
    let input = String::from_utf8_lossy(data);
    for (name, _) in &after {
        assert!(
            !SESSION_COOKIES.iter().any(|s| name.eq_ignore_ascii_case(s)),
            "cookie {name:?} reaches the upstream after strip; Cookie lines {input:?}"
        );
    }
    for (name, token) in SESSION_COOKIES.iter().zip(&tokens_before) {
        if token.is_some() {
            assert!(
                cookie::read_token(&stripped, name).is_none(),
                "the session token in {name} survives strip; Cookie lines {input:?}"
            );
        }
    }
    // Stripping only removes: every cookie left was there, in order.
    let mut rest = before.iter();
    for pair in &after {
        assert!(
            rest.any(|p| p == pair),
            "strip made up the cookie {pair:?}; Cookie lines {input:?}"
        );
    }
    // When it removed something, the rest goes upstream as one header, as
    // HTTP/1.1 requires (untouched otherwise).
    if after.len() != before.len() {
        assert!(
            stripped
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .count()
                <= 1,
            "strip left more than one Cookie header"
        );
    }
}

/// The configuration file: [`Config::parse`] must answer, never panic.
/// Input that is not UTF-8 is skipped (the file is read as a `String`).
pub fn check_config(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name == "GUISE_SIGNING_KEY").then(|| FUZZ_KEY.to_string());
    match Config::parse(source, "fuzz.yaml", Path::new("."), &env) {
        Ok(config) => {
            let shown = format!("{config:?}");
            assert!(
                !shown.contains(FUZZ_KEY),
                "the signing key shows in the config's Debug output"
            );
        }
        Err(e) => {
            // The messages are printed to the operator: making them must
            // not panic either (line lookups, paths).
            let _ = e.to_string();
            for issue in e.issues() {
                let _ = format!("{issue:?}");
            }
        }
    }
}

/// The JSON bodies of the login and admin endpoints:
/// [`Credentials::parse`], [`NewUser::parse`] and [`Patch::parse`].
pub fn check_endpoint_json(data: &[u8]) {
    if let Err(e) = Credentials::parse(data) {
        let _ = e.to_string();
    }
    match NewUser::parse(data) {
        Ok(new) => {
            if let Err(e) = new.user.check() {
                let _ = e.to_string();
            }
            // What the admin API lists must read back as the same user.
            let listed = serde_json::to_value(&new.user).expect("a user serialises");
            let back: crate::users::User =
                serde_json::from_value(listed).expect("a listed user parses back");
            assert!(back == new.user, "user does not round-trip: {:?}", new.user);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Err(e) = Patch::parse(data) {
        let _ = e.to_string();
    }
    check_partner_body(data);
}

/// A partner user's write body on a route whose `body` names records
/// ([`crate::partners::BodyCheck`]): a company at `/company_id` and a
/// relationship at `/link/id`.
///
/// Invariants: nothing panics; a JSON body is let through only if it is
/// empty or serde_json reads it as JSON, and then every id at a ref is
/// assigned to the partner; the same bytes as a form are let through only
/// if every non-empty `company_id` field is assigned; a refusal is a
/// client error (4xx); other encodings are refused unless empty.
fn check_partner_body(data: &[u8]) {
    use crate::body::Media;
    use crate::partners::{self, Access, Partner, PartnerKeep};
    use crate::respond::Refuse;
    use crate::routes::{AnswerAt, AnswerRef, Class, RouteSpec, RouteTable};

    let partner: Partner = serde_json::from_value(serde_json::json!({
        "id": "p-1", "name": "P", "companies": ["co-1"], "relationships": ["rel-1"]
    }))
    .expect("the partner builds");
    let refs = vec![
        AnswerRef {
            resource: "company".into(),
            at: AnswerAt::Field("/company_id".into()),
        },
        AnswerRef {
            resource: "relationship".into(),
            at: AnswerAt::Field("/link/id".into()),
        },
    ];
    let route = RouteSpec {
        name: "writes".into(),
        path: "/api/writes".into(),
        body: refs,
        ..RouteSpec::default()
    };
    let table = RouteTable::compile(&[route]).expect("the route compiles");
    let access = Access::Partner(PartnerKeep {
        partner: std::sync::Arc::new(partner),
    });
    let check = partners::body_check(&access, &table, Class::Route(0), false)
        .expect("a write on this route is checked");
    match check.decide(Media::Json, data) {
        Ok(()) if data.is_empty() => {}
        Ok(()) => {
            let value: serde_json::Value =
                serde_json::from_slice(data).expect("a body let through is JSON");
            for (pointer, assigned) in [("/company_id", "co-1"), ("/link/id", "rel-1")] {
                match value.pointer(pointer) {
                    None | Some(serde_json::Value::Null) => {}
                    Some(serde_json::Value::String(s)) => assert_eq!(s, assigned),
                    Some(other) => panic!("{pointer} let through as {other}"),
                }
            }
        }
        Err(e) => {
            assert!((400..500).contains(&e.status()), "{e}");
            let _ = e.to_string();
        }
    }
    match check.decide(Media::Form, data) {
        Ok(()) => {
            for (key, value) in url::form_urlencoded::parse(data) {
                if key == "company_id" && !value.is_empty() {
                    assert_eq!(value, "co-1", "a form named another company");
                }
            }
        }
        Err(e) => assert!((400..500).contains(&e.status()), "{e}"),
    }
    assert!(
        check.decide(Media::Other, data).is_ok() == data.is_empty(),
        "a body neither JSON nor a form is refused, an empty one is not"
    );
}

/// The response filters the partner, privacy and data-permission rules
/// run over the app's answers ([`crate::filter`]): one body, through a
/// JSON list filter (by ids and by values), a single-record check, field
/// redaction and the HTML rewriter.
///
/// Invariants: nothing panics; a JSON list is filtered only when
/// serde_json reads the body as JSON, and refused as not JSON only when it
/// does not; a filtered JSON body is still JSON; no more items are removed
/// than the list holds; a decision that keeps everything changes nothing
/// (JSON and HTML alike), so the filters never alter what they were not
/// asked to remove.
pub fn check_answer_filters(data: &[u8]) {
    use crate::filter::{
        Hide, HtmlRule, HtmlRules, IdFrom, JsonList, JsonRecord, JsonRedact, Limit,
    };

    let keep_even = |_: &str, id: &str| id.len().is_multiple_of(2);
    let keep_all = |_: &str, _: &str| true;
    struct Values(bool);
    impl crate::filter::KeepValues for Values {
        fn keep_values(&self, values: &[Option<&str>]) -> bool {
            self.0 || values.iter().flatten().any(|v| v.contains('A'))
        }
    }

    let list = JsonList::new(
        "/data",
        [("company", "/id"), ("partner", "/owner/id")],
        ["/total"],
    )
    .expect("the list rule builds");
    // JSON is UTF-8, and serde_json's skipping of byte input does not
    // check that strings are.
    let valid = std::str::from_utf8(data)
        .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok());
    let judged = [
        list.apply(data, &keep_even),
        list.apply_values(data, &Values(false)),
    ];
    // The list is checked by guise's own reader as its items are read: it
    // must call JSON what serde_json calls JSON, and nothing else.
    for e in judged.iter().filter_map(|r| r.as_ref().err()) {
        let syntax = e.to_string().contains("the body is not JSON (")
            || e.to_string().contains("truncated JSON");
        assert!(!(valid && syntax), "valid JSON refused: {e}");
    }
    for out in judged.into_iter().flatten() {
        assert!(valid, "a body that is not JSON was filtered");
        serde_json::from_slice::<serde::de::IgnoredAny>(&out.body)
            .expect("a filtered list is JSON");
        let items = serde_json::from_slice::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.pointer("/data").and_then(|d| d.as_array().map(Vec::len)))
            .unwrap_or(0);
        assert!(out.removed <= items, "{} removed of {items}", out.removed);
    }
    // Items naming no record are removed even when every record is kept
    // (fail closed); judged by values that keep everything, none is.
    let _ = list.apply(data, &keep_all);
    if let Ok(out) = list.apply_values(data, &Values(true)) {
        assert_eq!(out.removed, 0);
        assert_eq!(&out.body[..], data, "keeping everything changed the body");
    }
    let record = JsonRecord::new("/data", [("company", "/id")]).expect("the record rule builds");
    let _ = record.check(data, &keep_even);
    let _ = record.check_values(data, &Values(false));
    let redact =
        JsonRedact::new("/data", ["/email", "/owner/phone"]).expect("the redaction builds");
    if let Ok(out) = redact.apply(data) {
        serde_json::from_slice::<serde::de::IgnoredAny>(&out.body)
            .expect("a redacted body is JSON");
    }

    let rules = |hide: Hide| {
        HtmlRules::new(
            vec![HtmlRule {
                selector: "tr[data-resource=company], li".into(),
                refs: vec![
                    ("company".into(), IdFrom::Attribute("data-id".into())),
                    ("company".into(), IdFrom::Href("/companies/{id}".into())),
                ],
            }],
            hide,
            Limit(64 * 1024),
        )
        .expect("the HTML rule builds")
    };
    let html = rules(Hide::Remove);
    // By ids: an element naming no record is removed, so only "never
    // panics" holds; by values with a decision that keeps everything, the
    // page must come out as it went in.
    let streams = [
        (html.stream(std::sync::Arc::new(keep_even)), false),
        (html.stream_values(std::sync::Arc::new(Values(true))), true),
    ];
    for (mut stream, must_match) in streams {
        let mut out = Vec::new();
        let mut ok = true;
        // Fed in two chunks, split where the data says, as bodies arrive.
        let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
        for chunk in [&data[..cut], &data[cut..]] {
            match stream.write(chunk) {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            if let Ok(b) = stream.end() {
                out.extend_from_slice(&b);
                if must_match {
                    assert_eq!(out, data, "keeping every element changed the page");
                }
            }
        }
    }
    let mut notice =
        rules(Hide::Notice("hidden".into())).stream_values(std::sync::Arc::new(Values(false)));
    let _ = notice.write(data);
}

/// The JSON list filter alone: its reader is guise's own (see
/// `filter::scan`), and without the HTML rewriter a fuzzer runs many more
/// inputs through it. Each input is also tried as the items of a list
/// (`{"data": [` input `], "total": 3}`), so mutations land inside items
/// from the start.
///
/// Invariants: nothing panics; a body is filtered only when serde_json
/// reads it as JSON, and refused as not JSON only when serde_json does
/// not; a filtered body is JSON.
pub fn check_json_list(data: &[u8]) {
    use crate::filter::JsonList;

    struct HasA;
    impl crate::filter::KeepValues for HasA {
        fn keep_values(&self, values: &[Option<&str>]) -> bool {
            values.iter().flatten().any(|v| v.contains('A'))
        }
    }
    let list = JsonList::new(
        "/data",
        [("company", "/id"), ("partner", "/owner/id")],
        ["/total"],
    )
    .expect("the list rule builds");
    let mut items = br#"{"data": ["#.to_vec();
    items.extend_from_slice(data);
    items.extend_from_slice(br#"], "total": 3}"#);
    for body in [data, &items[..]] {
        let valid = std::str::from_utf8(body)
            .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok());
        match list.apply_values(body, &HasA) {
            Ok(out) => {
                assert!(valid, "a body that is not JSON was filtered");
                serde_json::from_slice::<serde::de::IgnoredAny>(&out.body)
                    .expect("a filtered list is JSON");
            }
            Err(e) => {
                let syntax = e.to_string().contains("the body is not JSON (")
                    || e.to_string().contains("truncated JSON");
                assert!(!(valid && syntax), "valid JSON refused: {e}");
            }
        }
    }
}

/// The partner import (`guise import partners`, `POST
/// /_guise/admin/partners/import`): a CSV file from a CRM export.
///
/// Invariants: nothing panics; a file with bad rows imports nothing unless
/// told to skip them, and then skips exactly those rows; every bad row
/// names a line of the file; every planned user is valid, lower-cased and
/// belongs to a planned partner; and importing the result again changes
/// nothing (the import is idempotent).
pub fn check_partner_import(data: &[u8]) {
    use std::collections::HashMap;

    use crate::partners::import::{plan, ImportError};
    use crate::partners::Partner;
    use crate::users::User;

    let no_partner = |_: &str| -> Option<Partner> { None };
    let no_user = |_: &str| -> Option<User> { None };
    let strict = plan(data, false, &no_partner, &no_user);
    let lenient = plan(data, true, &no_partner, &no_user);
    let lines = data.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let plan = match (strict, lenient) {
        (Err(ImportError::NotCsv(a)), Err(ImportError::NotCsv(b))) => {
            assert_eq!(a, b, "the same file is not CSV for one reason");
            return;
        }
        (Err(ImportError::BadRows(bad)), Ok(plan)) => {
            assert!(!bad.is_empty(), "a refusal for bad rows names them");
            assert_eq!(
                bad, plan.skipped,
                "skipping leaves out exactly the bad rows"
            );
            plan
        }
        (Ok(strict), Ok(plan)) => {
            assert!(strict.skipped.is_empty() && plan.skipped.is_empty());
            assert_eq!(strict, plan, "with no bad row, skipping changes nothing");
            plan
        }
        (strict, lenient) => {
            panic!("strict and lenient imports disagree: {strict:?} / {lenient:?}")
        }
    };
    for e in &plan.skipped {
        assert!(e.line <= lines, "bad row on line {} of {lines}", e.line);
    }
    let partners: HashMap<String, Partner> = plan
        .partners
        .iter()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    for u in &plan.users {
        u.check().expect("a planned user is valid");
        assert_eq!(u.email, u.email.to_lowercase(), "emails are lower-cased");
        let partner = u
            .partner
            .as_deref()
            .expect("an imported user has a partner");
        assert!(partners.contains_key(partner), "{partner} is not planned");
    }
    let users: HashMap<String, User> = plan
        .users
        .iter()
        .map(|u| (u.email.clone(), u.clone()))
        .collect();
    let again = plan_again(data, &partners, &users);
    assert!(
        again.partners.is_empty() && again.users.is_empty(),
        "importing the same file twice changed {again:?}"
    );
}

/// The import of `data` again, over what its first import saved.
fn plan_again(
    data: &[u8],
    partners: &std::collections::HashMap<String, crate::partners::Partner>,
    users: &std::collections::HashMap<String, crate::users::User>,
) -> crate::partners::import::Plan {
    crate::partners::import::plan(
        data,
        true,
        &|id: &str| partners.get(id).cloned(),
        &|email: &str| users.get(email).cloned(),
    )
    .expect("a file imported once imports again")
}
