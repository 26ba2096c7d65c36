use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use pingora::http::RequestHeader;

use hmac::Mac;

use super::sign::{mac, tags_match};
use super::*;
use crate::clock::unix_now;
use crate::demo_upstream::IdentityCheck;

const KEY: &[u8] = b"guise-test-vector-key-0123456789";
const PREFIX: &str = "x-guise-";
const NOW: u64 = 1_700_000_000;
const SKEW: Duration = DEFAULT_MAX_SKEW;

fn identity() -> IdentityHeaders {
    let mut h = IdentityHeaders::for_user(
        "u-1001",
        "ada@example.com",
        &["admin", "user"],
        "3f2a9c1e0b7d4a65",
    )
    .unwrap();
    h.push(names::IMPERSONATOR, "u-0001").unwrap();
    h
}

/// The headers as the upstream receives them.
fn received(h: &IdentityHeaders, method: &str, path: &str, at: u64) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in h.signed_headers(KEY, PREFIX, method, path, at).unwrap() {
        map.append(n, v);
    }
    map.insert("accept", HeaderValue::from_static("text/html"));
    map
}

fn check(map: &HeaderMap, method: &str, path: &str) -> Result<Verified, VerifyError> {
    verify(KEY, PREFIX, method, path, map, NOW, SKEW)
}

// === the test vector ===

/// Other languages check their verifier against this vector; the same values
/// are in `docs/identity-headers.md` and `docs/verify_identity.py`.
#[test]
fn canonical_string_of_the_test_vector_is_exactly_the_documented_one() {
    let pairs = identity().pairs().to_vec();
    let canonical = canonical_string(PREFIX, "GET", "/companies/42", &pairs, NOW);
    assert_eq!(
        canonical,
        "guise-identity-v1\n\
         1700000000\n\
         GET\n\
         /companies/42\n\
         x-guise-impersonator:u-0001\n\
         x-guise-roles:admin,user\n\
         x-guise-session:3f2a9c1e0b7d4a65\n\
         x-guise-user:u-1001\n\
         x-guise-user-email:ada@example.com\n"
    );
    assert_eq!(
        sign(KEY, PREFIX, "GET", "/companies/42", &pairs, NOW),
        "t=1700000000,v1=db80afd6dc3f4cebe96101f18b6df39fed26911b6445fb94bcaec60fcfe8549e"
    );
}

#[test]
fn canonical_string_leaves_out_the_signature_and_lower_cases_names() {
    let pairs = vec![
        ("User".to_string(), "u-1".to_string()),
        ("signature".to_string(), "t=1,v1=00".to_string()),
    ];
    assert_eq!(
        canonical_string("X-Guise-", "GET", "/", &pairs, 5),
        "guise-identity-v1\n5\nGET\n/\nx-guise-user:u-1\n"
    );
}

// === round trip and tampering ===

#[test]
fn signed_headers_verify_and_report_the_identity() {
    let map = received(&identity(), "GET", "/companies/42", NOW);
    let Verified::Signed(id) = check(&map, "GET", "/companies/42").unwrap() else {
        panic!("expected a signed identity");
    };
    assert_eq!(id.timestamp, NOW);
    assert_eq!(id.user(), Some("u-1001"));
    assert_eq!(id.get(names::ROLES), Some("admin,user"));
    assert_eq!(id.get(names::IMPERSONATOR), Some("u-0001"));
    assert_eq!(id.headers().len(), 5);
}

#[test]
fn a_changed_value_fails() {
    let mut map = received(&identity(), "GET", "/companies/42", NOW);
    map.insert("x-guise-user", HeaderValue::from_static("u-0001"));
    assert_eq!(
        check(&map, "GET", "/companies/42"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_changed_method_fails() {
    let map = received(&identity(), "GET", "/companies/42", NOW);
    assert_eq!(
        check(&map, "DELETE", "/companies/42"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        check(&map, "get", "/companies/42"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_changed_path_fails() {
    let map = received(&identity(), "GET", "/companies/42", NOW);
    assert_eq!(
        check(&map, "GET", "/companies/43"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn an_extra_identity_header_fails() {
    let mut map = received(&identity(), "GET", "/companies/42", NOW);
    map.insert("x-guise-partner", HeaderValue::from_static("p-1"));
    assert_eq!(
        check(&map, "GET", "/companies/42"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn a_removed_identity_header_fails() {
    let mut map = received(&identity(), "GET", "/companies/42", NOW);
    map.remove("x-guise-impersonator");
    assert_eq!(
        check(&map, "GET", "/companies/42"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn another_key_fails() {
    let map = received(&identity(), "GET", "/", NOW);
    assert_eq!(
        verify(b"another key", PREFIX, "GET", "/", &map, NOW, SKEW),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn header_names_are_matched_whatever_the_configured_prefix_case() {
    let map = received(&identity(), "GET", "/", NOW);
    assert!(matches!(
        verify(KEY, "X-Guise-", "GET", "/", &map, NOW, SKEW),
        Ok(Verified::Signed(_))
    ));
}

// === time ===

#[test]
fn a_stale_timestamp_fails_even_when_authentic() {
    let map = received(&identity(), "GET", "/", NOW - 31);
    assert_eq!(
        check(&map, "GET", "/"),
        Err(VerifyError::Stale {
            age_secs: 31,
            max_skew_secs: 30
        })
    );
}

#[test]
fn a_future_timestamp_fails_even_when_authentic() {
    let map = received(&identity(), "GET", "/", NOW + 31);
    assert_eq!(
        check(&map, "GET", "/"),
        Err(VerifyError::Future {
            ahead_secs: 31,
            max_skew_secs: 30
        })
    );
}

#[test]
fn timestamps_exactly_at_the_skew_pass() {
    for at in [NOW - 30, NOW + 30] {
        let map = received(&identity(), "GET", "/", at);
        assert!(check(&map, "GET", "/").is_ok(), "at {at}");
    }
}

#[test]
fn a_changed_timestamp_fails() {
    let mut map = received(&identity(), "GET", "/", NOW);
    let sig = map["x-guise-signature"]
        .to_str()
        .unwrap()
        .replace("t=1700000000", "t=1700000001");
    map.insert("x-guise-signature", HeaderValue::from_str(&sig).unwrap());
    assert_eq!(check(&map, "GET", "/"), Err(VerifyError::BadSignature));
}

// === unsafe values ===

#[test]
fn cr_lf_nul_del_and_other_controls_are_refused_when_building() {
    for (bad, at) in [
        ("u-1\r\nx-guise-roles: super_admin", 3),
        ("u-1\n", 3),
        ("u\0", 1),
        ("u\x7f", 1),
        ("\x1bu", 0),
    ] {
        let err = IdentityHeaders::for_user(bad, "a@example.com", &["user"], "s").unwrap_err();
        assert_eq!(
            err,
            IdentityError::UnsafeValue {
                header: "user".into(),
                reason: UnsafeReason::ControlCharacter { at }
            },
            "{bad:?}"
        );
        assert!(!err.to_string().contains(bad), "the value is not echoed");
    }
}

#[test]
fn non_ascii_edge_whitespace_and_overlong_values_are_refused() {
    let mut h = IdentityHeaders::new();
    let reason = |r: Result<&mut IdentityHeaders, IdentityError>| match r {
        Err(IdentityError::UnsafeValue { reason, .. }) => reason,
        other => panic!("expected UnsafeValue, got {other:?}"),
    };
    assert_eq!(
        reason(h.push("user", "José")),
        UnsafeReason::NonAscii { at: 3 }
    );
    assert_eq!(reason(h.push("user", " u-1")), UnsafeReason::EdgeWhitespace);
    assert_eq!(
        reason(h.push("user", "u-1\t")),
        UnsafeReason::EdgeWhitespace
    );
    let long = "a".repeat(MAX_VALUE_LEN + 1);
    assert_eq!(
        reason(h.push("user", &long)),
        UnsafeReason::TooLong {
            len: MAX_VALUE_LEN + 1
        }
    );
    assert!(h.pairs().is_empty(), "nothing refused was kept");
    h.push("user", "Ada Lovelace\tx").unwrap();
}

#[test]
fn a_role_holding_a_comma_is_refused() {
    let err = IdentityHeaders::for_user("u", "e@x", &["admin,super_admin"], "s").unwrap_err();
    assert!(matches!(
        err,
        IdentityError::UnsafeValue {
            reason: UnsafeReason::ListItem,
            ..
        }
    ));
}

#[test]
fn bad_duplicate_and_signature_names_are_refused() {
    let mut h = IdentityHeaders::new();
    assert!(matches!(
        h.push("User", "u"),
        Err(IdentityError::BadName { .. })
    ));
    assert!(matches!(
        h.push("us er", "u"),
        Err(IdentityError::BadName { .. })
    ));
    assert!(matches!(
        h.push("signature", "u"),
        Err(IdentityError::BadName { .. })
    ));
    h.push("user", "u").unwrap();
    assert!(matches!(
        h.push("user", "v"),
        Err(IdentityError::Duplicate { .. })
    ));
}

#[test]
fn received_values_with_obs_text_are_refused() {
    let mut map = received(&identity(), "GET", "/", NOW);
    map.insert("x-guise-user", HeaderValue::from_bytes(b"u\xe9").unwrap());
    assert_eq!(
        check(&map, "GET", "/"),
        Err(VerifyError::UnsafeValue {
            header: "x-guise-user".into(),
            reason: UnsafeReason::NonAscii { at: 1 }
        })
    );
}

#[test]
fn a_path_with_a_query_or_line_break_is_not_signed() {
    let h = identity();
    for path in ["/a?b=1", "/a\nx-guise-user:admin", "/a b"] {
        assert!(matches!(
            h.signed_headers(KEY, PREFIX, "GET", path, NOW),
            Err(IdentityError::UnsafeRequestLine { .. })
        ));
    }
}

// === signature header handling ===

#[test]
fn the_tag_is_compared_in_constant_time_by_hmac_verify_slice() {
    // Timing cannot be measured reliably in a unit test, so pin the means:
    // the only comparison of tags is `tags_match`, and it is `verify_slice`
    // (which uses `subtle::ConstantTimeEq`), not `==`.
    let source = include_str!("sign.rs");
    let start = source.find("fn tags_match(").unwrap();
    let body = &source[start..start + source[start..].find("\n}").unwrap()];
    assert!(body.contains("verify_slice(tag)"), "{body}");
    assert!(!body.contains("=="), "{body}");
    assert_eq!(
        source.matches("tags_match(").count(),
        1,
        "defined once in sign.rs"
    );
    let verifier = include_str!("verify.rs");
    assert_eq!(
        verifier.matches("tags_match(").count(),
        1,
        "called once, by verify"
    );
    assert!(
        !source.contains("tag ==") && !verifier.contains("tag =="),
        "no other comparison of tags"
    );

    let expected = mac(KEY, "x").finalize().into_bytes().to_vec();
    assert!(tags_match(mac(KEY, "x"), &expected));
    for i in [0, 31] {
        let mut flipped = expected.clone();
        flipped[i] ^= 1;
        assert!(!tags_match(mac(KEY, "x"), &flipped), "byte {i}");
    }
    assert!(
        !tags_match(mac(KEY, "x"), &expected[..16]),
        "a prefix is no match"
    );
}

#[test]
fn identity_headers_without_a_signature_fail() {
    let mut map = received(&identity(), "GET", "/", NOW);
    map.remove("x-guise-signature");
    assert_eq!(check(&map, "GET", "/"), Err(VerifyError::MissingSignature));
}

#[test]
fn malformed_signatures_fail() {
    let good = received(&identity(), "GET", "/", NOW);
    let hex64 = "0".repeat(64);
    for bad in [
        String::new(),
        "t=1700000000".into(),
        format!("v1={hex64},t=1700000000"),
        format!("t=-1,v1={hex64}"),
        format!("t=,v1={hex64}"),
        format!("t=99999999999999999999999,v1={hex64}"),
        "t=1700000000,v1=abc".into(),
        format!("t=1700000000,v1={}", "zz".repeat(32)),
        format!("t=1700000000,v1={hex64},v2=00"),
    ] {
        let mut map = good.clone();
        map.insert("x-guise-signature", HeaderValue::from_str(&bad).unwrap());
        assert!(
            matches!(
                check(&map, "GET", "/"),
                Err(VerifyError::MalformedSignature { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn duplicate_identity_or_signature_headers_fail() {
    for name in ["x-guise-roles", "x-guise-signature"] {
        let mut map = received(&identity(), "GET", "/", NOW);
        let again = map[name].clone();
        map.append(name, again);
        assert_eq!(
            check(&map, "GET", "/"),
            Err(VerifyError::Duplicate {
                header: name.into()
            })
        );
    }
}

#[test]
fn a_request_without_identity_headers_is_anonymous() {
    let mut map = HeaderMap::new();
    map.insert("accept", HeaderValue::from_static("*/*"));
    map.insert("x-guisex", HeaderValue::from_static("not ours"));
    assert_eq!(check(&map, "GET", "/"), Ok(Verified::Anonymous));
}

#[test]
fn a_lone_signature_is_still_checked() {
    let mut map = HeaderMap::new();
    map.insert(
        "x-guise-signature",
        HeaderValue::from_str(&format!("t={NOW},v1={}", "0".repeat(64))).unwrap(),
    );
    assert_eq!(check(&map, "GET", "/"), Err(VerifyError::BadSignature));
}

// === on the pingora request ===

#[test]
fn sign_request_replaces_client_headers_and_signs_the_path_without_query() {
    let mut req = RequestHeader::build("POST", b"/api/companies?x=1", None).unwrap();
    req.append_header("X-Guise-User", "admin").unwrap();
    req.append_header("x-guise-tenant", "forged").unwrap();
    identity().sign_request(&mut req, KEY, PREFIX, NOW).unwrap();
    assert!(req.headers.get("x-guise-tenant").is_none());
    assert_eq!(req.headers.get_all("x-guise-user").iter().count(), 1);
    let Verified::Signed(id) = check(&req.headers, "POST", "/api/companies").unwrap() else {
        panic!("expected a signed identity");
    };
    assert_eq!(id.user(), Some("u-1001"));
}

#[test]
fn a_prepared_identity_signs_each_request_like_the_unprepared_path() {
    let signer = Signer::new(KEY, PREFIX);
    let prepared = signer.prepare(&identity()).unwrap();
    for (method, path, at) in [("GET", "/a", NOW), ("POST", "/api/companies", NOW + 7)] {
        let mut req = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        req.append_header("x-guise-user", "forged").unwrap();
        signer.sign_prepared(&mut req, &prepared, at).unwrap();
        let expected = sign(KEY, PREFIX, method, path, identity().pairs(), at);
        assert_eq!(req.headers["x-guise-signature"], expected.as_str());
        assert_eq!(req.headers.get_all("x-guise-user").iter().count(), 1);
        let Verified::Signed(id) =
            verify(KEY, PREFIX, method, path, &req.headers, at, SKEW).unwrap()
        else {
            panic!("expected a signed identity");
        };
        assert_eq!(id.user(), Some("u-1001"));
        assert_eq!(id.get(names::IMPERSONATOR), Some("u-0001"));
    }
}

#[test]
fn a_prepared_identity_is_refused_by_a_signer_with_another_prefix() {
    let prepared = Signer::new(KEY, PREFIX).prepare(&identity()).unwrap();
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    let err = Signer::new(KEY, "x-other-")
        .sign_prepared(&mut req, &prepared, NOW)
        .unwrap_err();
    assert!(err.to_string().contains("prepared for prefix"), "{err}");
    assert!(req.headers.is_empty());
}

/// A stand-in for a subject: one user id, shared as a session shares its
/// user.
struct One(Arc<String>, std::cell::Cell<u32>);

impl PreparedFrom for One {
    fn sources(&self) -> Vec<Arc<dyn Any + Send + Sync>> {
        vec![self.0.clone()]
    }
    fn is_from(&self, held: &[Arc<dyn Any + Send + Sync>]) -> bool {
        matches!(held, [h] if same_value(h, &self.0))
    }
    fn headers(&self) -> Result<IdentityHeaders, IdentityError> {
        self.1.set(self.1.get() + 1);
        IdentityHeaders::for_user(&self.0, "ada@example.com", &["user"], "3f2a9c1e0b7d4a65")
    }
}

#[test]
fn a_prepared_slot_reuses_its_identity_until_the_source_or_prefix_changes() {
    let slot = PreparedSlot::default();
    let signer = Signer::new(KEY, PREFIX);
    let ada = One(Arc::new("u-ada".to_string()), Default::default());
    let first = slot.get_or_prepare(&ada, &signer).unwrap();
    let again = slot.get_or_prepare(&ada, &signer).unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(ada.1.get(), 1);

    // An edited user is a new value, even with equal contents.
    let edited = One(Arc::new("u-ada".to_string()), Default::default());
    let fresh = slot.get_or_prepare(&edited, &signer).unwrap();
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_eq!(edited.1.get(), 1);

    let other = Signer::new(KEY, "x-other-");
    let renamed = slot.get_or_prepare(&edited, &other).unwrap();
    assert_eq!(edited.1.get(), 2);
    let mut req = RequestHeader::build("GET", b"/", None).unwrap();
    other.sign_prepared(&mut req, &renamed, NOW).unwrap();
    assert_eq!(req.headers["x-other-user"], "u-ada");
}

#[test]
fn the_upstream_verifier_refuses_unsigned_and_passes_signed_and_anonymous() {
    let verifier = UpstreamVerifier::new(KEY, PREFIX);
    let now = unix_now();
    let signed = received(&identity(), "GET", "/dashboard", now);
    assert_eq!(verifier.check("GET", "/dashboard", &signed), Ok(()));
    assert_eq!(verifier.check("GET", "/", &HeaderMap::new()), Ok(()));
    let mut forged = HeaderMap::new();
    forged.insert("x-guise-user", HeaderValue::from_static("admin"));
    let reason = verifier.check("GET", "/", &forged).unwrap_err();
    assert!(reason.contains("without a signature"), "{reason}");
    let stale = received(&identity(), "GET", "/dashboard", now - 3600);
    assert!(verifier.check("GET", "/dashboard", &stale).is_err());
    assert!(!format!("{verifier:?}").contains("guise-test-vector"));
}

// === helpers ===

#[test]
fn every_prefixed_header_is_removed_whatever_its_case() {
    let mut r = RequestHeader::build("GET", b"/", None).unwrap();
    r.append_header("X-Guise-User", "admin").unwrap();
    r.append_header("x-guise-user", "second").unwrap();
    r.append_header("X-GUISE-ROLES", "super_admin").unwrap();
    r.append_header("x-guisex", "kept: no dash after prefix")
        .unwrap();
    r.append_header("accept", "*/*").unwrap();
    strip_client_headers(&mut r, "x-guise-");
    assert!(r.headers.get("x-guise-user").is_none());
    assert!(r.headers.get("x-guise-roles").is_none());
    assert!(r.headers.get("x-guisex").is_some());
    assert!(r.headers.get("accept").is_some());
}
