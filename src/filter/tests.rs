use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::respond::Refuse;

/// Keeps exactly these `(resource, id)` pairs.
fn only(pairs: &'static [(&'static str, &'static str)]) -> impl Keep + Clone {
    move |resource: &str, id: &str| pairs.iter().any(|(r, i)| *r == resource && *i == id)
}

fn list() -> JsonList {
    JsonList::new(
        "/data",
        [
            ("company", "/company_id"),
            ("relationship", "/relationship_id"),
        ],
        ["/meta/total"],
    )
    .unwrap()
}

fn parse(b: &Bytes) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn ids(v: &Value) -> Vec<&str> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect()
}

fn malformed(e: FilterError) -> String {
    match e {
        FilterError::Malformed { reason } => reason,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

// === JSON lists ===

#[test]
fn an_item_is_kept_when_any_of_its_references_is_kept_and_removed_when_none_is() {
    let body = json!({"data": [
        {"id": "1", "company_id": "co-1", "relationship_id": "rel-9"},
        {"id": "2", "company_id": "co-2", "relationship_id": "rel-1"},
        {"id": "3", "company_id": "co-2", "relationship_id": "rel-2"},
        {"id": "4", "company_id": "co-1"},
    ], "meta": {"total": 4}});
    let keep = only(&[("company", "co-1"), ("relationship", "rel-1")]);
    let out = list().apply(body.to_string().as_bytes(), &keep).unwrap();
    assert_eq!(out.removed, 1);
    assert_eq!(ids(&parse(&out.body)), ["1", "2", "4"]);
}

#[test]
fn references_are_matched_to_their_own_resource() {
    // co-1 is a kept company, not a kept relationship.
    let body = br#"{"data": [{"id": "1", "relationship_id": "co-1"}]}"#;
    let out = list().apply(body, &only(&[("company", "co-1")])).unwrap();
    assert_eq!(out.removed, 1);
    assert!(ids(&parse(&out.body)).is_empty());
}

#[test]
fn an_item_with_no_reference_is_removed_fail_closed() {
    let body = json!({"data": [
        {"id": "missing"},
        {"id": "null", "company_id": null},
        {"id": "empty", "company_id": ""},
        {"id": "object", "company_id": {"id": "co-1"}},
        {"id": "bool", "company_id": true},
        "co-1",
        ["co-1"],
        {"id": "ok", "company_id": "co-1"},
    ]});
    // A decision that keeps everything: only evidence counts.
    let out = list()
        .apply(body.to_string().as_bytes(), &|_: &str, _: &str| true)
        .unwrap();
    assert_eq!(out.removed, 7);
    assert_eq!(ids(&parse(&out.body)), ["ok"]);
}

#[test]
fn counts_are_decreased_by_the_number_removed() {
    let body = br#"{"meta": {"total": 57, "page_total": 3, "pages": 2}, "data": [{"id": "1", "company_id": "co-1"}, {"id": "2", "company_id": "co-2"}, {"id": "3", "company_id": "co-3"}]}"#;
    let f = JsonList::new(
        "/data",
        [("company", "/company_id")],
        ["/meta/total", "/meta/page_total", "/meta/absent"],
    )
    .unwrap();
    let out = f.apply(body, &only(&[("company", "co-2")])).unwrap();
    let v = parse(&out.body);
    assert_eq!(out.removed, 2);
    assert_eq!(v["meta"], json!({"total": 55, "page_total": 1, "pages": 2}));
    assert_eq!(ids(&v), ["2"]);
}

#[test]
fn a_null_count_is_left_alone_and_one_that_is_not_a_whole_number_is_malformed() {
    let keep = only(&[]);
    let item = r#"[{"id": "1", "company_id": "co-1"}]"#;
    let out = list()
        .apply(
            format!(r#"{{"data": {item}, "meta": {{"total": null}}}}"#).as_bytes(),
            &keep,
        )
        .unwrap();
    assert_eq!(parse(&out.body)["meta"]["total"], Value::Null);
    for bad in [r#""1""#, "1.5", "-1", "1e2"] {
        let body = format!(r#"{{"data": {item}, "meta": {{"total": {bad}}}}}"#);
        let reason = malformed(list().apply(body.as_bytes(), &keep).unwrap_err());
        assert!(reason.contains("/meta/total"), "{reason}");
        // Also when nothing would be removed.
        let all = |_: &str, _: &str| true;
        malformed(list().apply(body.as_bytes(), &all).unwrap_err());
    }
}

#[test]
fn a_count_never_goes_below_zero() {
    let body = br#"{"data": [{"company_id": "a"}, {"company_id": "b"}], "meta": {"total": 1}}"#;
    let out = list().apply(body, &only(&[])).unwrap();
    assert_eq!(parse(&out.body)["meta"]["total"], 0);
}

#[test]
fn a_nested_pointer_reaches_the_list_and_nested_references_the_id() {
    let body = json!({"result": {"pages": [{"rows": []}, {"rows": [
        {"id": "1", "owner": {"company": {"id": "co-1"}}},
        {"id": "2", "owner": {"company": {"id": "co-2"}}},
    ]}]}, "count": 2});
    let f = JsonList::new(
        "/result/pages/1/rows",
        [("company", "/owner/company/id")],
        ["/count"],
    )
    .unwrap();
    let out = f
        .apply(body.to_string().as_bytes(), &only(&[("company", "co-2")]))
        .unwrap();
    let v = parse(&out.body);
    assert_eq!(v["result"]["pages"][1]["rows"][0]["id"], "2");
    assert_eq!(v["result"]["pages"][1]["rows"].as_array().unwrap().len(), 1);
    assert_eq!(v["count"], 1);
}

#[test]
fn pointer_tokens_are_unescaped() {
    let body = br#"{"a/b": {"~x": [{"c": "co-1"}, {"c": "co-2"}]}}"#;
    let f = JsonList::new("/a~1b/~0x", [("company", "/c")], [] as [&str; 0]).unwrap();
    let out = f.apply(body, &only(&[("company", "co-1")])).unwrap();
    assert_eq!(&out.body[..], br#"{"a/b": {"~x": [{"c": "co-1"}]}}"#);
}

#[test]
fn numeric_ids_are_passed_as_written_and_escaped_ids_unescaped() {
    let body =
        br#"{"data": [{"company_id": 42}, {"company_id": "co\u002d7"}, {"company_id": 43}]}"#;
    let seen = std::sync::Mutex::new(Vec::new());
    let keep = |_: &str, id: &str| {
        seen.lock().unwrap().push(id.to_string());
        id != "43"
    };
    let out = list().apply(body, &keep).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["42", "co-7", "43"]);
    assert_eq!(out.removed, 1);
}

#[test]
fn the_rest_of_the_body_keeps_its_bytes() {
    // Key order, spacing, number spelling and escapes outside the removed
    // items are the upstream's own.
    let body = "{ \"z\": 1.50, \"data\" : [ {\"company_id\":\"co-1\",\"b\":1,\"a\":2} ,\n {\"company_id\":\"co-2\"} ,{\"company_id\":\"co-3\",\"s\":\"\\u00e9\"} ], \"a\": \"\\/x\" }";
    let out = list()
        .apply(
            body.as_bytes(),
            &only(&[("company", "co-1"), ("company", "co-3")]),
        )
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&out.body).unwrap(),
        "{ \"z\": 1.50, \"data\" : [ {\"company_id\":\"co-1\",\"b\":1,\"a\":2},{\"company_id\":\"co-3\",\"s\":\"\\u00e9\"} ], \"a\": \"\\/x\" }"
    );
}

#[test]
fn nothing_removed_gives_the_body_back_unchanged() {
    let body = br#"{"data":[{"company_id":"co-1"}],"meta":{"total":9}}"#;
    let out = list().apply(body, &only(&[("company", "co-1")])).unwrap();
    assert_eq!(out.removed, 0);
    assert_eq!(&out.body[..], &body[..]);
}

#[test]
fn removing_every_item_leaves_an_empty_array() {
    let body = br#"{"data": [ {"company_id":"a"}, {"company_id":"b"} ]}"#;
    let out = list().apply(body, &only(&[])).unwrap();
    assert_eq!(out.removed, 2);
    assert_eq!(parse(&out.body)["data"], json!([]));
}

#[test]
fn a_list_pointer_that_names_no_array_is_malformed() {
    for body in [
        &br#"{"data": {"company_id": "co-1"}}"#[..],
        br#"{"data": "co-1"}"#,
        br#"{"data": null}"#,
        br#"{"other": []}"#,
        br#"[]"#,
    ] {
        let reason = malformed(list().apply(body, &only(&[])).unwrap_err());
        assert!(reason.contains("/data"), "{reason}");
    }
}

#[test]
fn a_body_that_is_not_json_is_malformed_and_the_reason_quotes_none_of_it() {
    for body in [
        &b"<html>secret</html>"[..],
        br#"{"data": [{"company_id": "secret"}]"#,
        br#"{"data": []} secret"#,
        br#"{"data": [{"company_id": "secret}]}"#,
        b"\xff\xfe{}",
        b"",
    ] {
        let e = list().apply(body, &only(&[])).unwrap_err();
        assert_eq!(e.status(), 502);
        assert_eq!(e.code(), "filter_malformed");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}

/// The list is checked in the same pass that reads its items, so a
/// mistake anywhere in it (inside an item, between items, in a value no
/// rule reads) refuses the body, as serde_json would; and says where.
#[test]
fn a_list_that_is_not_json_anywhere_is_malformed_and_says_where() {
    let cases: [(&[u8], &str); 15] = [
        (br#"{"data": [{"company_id": "co-1" "x": 1}]}"#, "column 33"),
        (
            br#"{"data": [{"company_id": "co-1"}{"company_id": "co-1"}]}"#,
            "column 33",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": 01}]}"#,
            "column 40",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": 1.}]}"#,
            "column 41",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": -}]}"#,
            "column 40",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": tru}]}"#,
            "column 39",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": [1,]}]}"#,
            "column 42",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": {"a" 1}}]}"#,
            "column 44",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": {1: 1}}]}"#,
            "column 40",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": "\x"}]}"#,
            "column 41",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": "\u12g4"}]}"#,
            "column 44",
        ),
        (
            b"{\"data\": [{\"company_id\": \"co-1\", \"n\": \"a\x01\"}]}",
            "column 41",
        ),
        (
            b"{\"data\": [{\"company_id\": \"co-1\", \"n\": \"abcdefghijkl\x1fmnopqrstuvwxyz\"}]}",
            "column 52",
        ),
        (
            br#"{"data": [{"company_id": "co-1", "n": [1}]}"#,
            "column 41",
        ),
        (
            b"{\"data\": [{\"company_id\": \"co-1\"},\n {\"n\": ]}]}",
            "line 2, column 8",
        ),
    ];
    for (body, at) in cases {
        let text = std::str::from_utf8(body).unwrap();
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
        let reason = malformed(
            list()
                .apply(body, &only(&[("company", "co-1")]))
                .unwrap_err(),
        );
        assert!(
            reason.starts_with("the body is not JSON"),
            "{text}: {reason}"
        );
        assert!(reason.contains(at), "{text}: {reason}");
    }
    for body in [
        &br#"{"data": [{"company_id": "co-1"}"#[..],
        br#"{"data": [{"company_id": "co-1", "n": "abc"#,
        br#"{"data": [{"company_id": "co-1", "n": "\u12"#,
        br#"{"data": [{"company_id": "co-1", "n": 1"#,
    ] {
        let reason = malformed(list().apply(body, &only(&[])).unwrap_err());
        assert!(reason.starts_with("the body is truncated JSON"), "{reason}");
    }
}

#[test]
fn a_key_on_the_filtered_path_twice_is_malformed() {
    // Parsers disagree on which duplicate wins; the client's might not be
    // the one filtered.
    for body in [
        &br#"{"data": [], "data": [{"company_id": "co-2"}]}"#[..],
        br#"{"data": [{"company_id": "co-1", "company_id": "co-2"}]}"#,
        br#"{"data": [], "meta": {"total": 1, "total": 2}}"#,
    ] {
        let reason = malformed(
            list()
                .apply(body, &only(&[("company", "co-1")]))
                .unwrap_err(),
        );
        assert!(reason.contains("twice"), "{reason}");
    }
    // Keys off the configured paths may repeat: they are not read.
    let body = br#"{"x": 1, "x": 2, "data": [{"n": 1, "n": 2, "company_id": "co-1"}]}"#;
    assert!(list().apply(body, &only(&[("company", "co-1")])).is_ok());
}

#[test]
fn rules_that_cannot_work_are_refused_when_built() {
    let refs = [("company", "/company_id")];
    let none: [&str; 0] = [];
    for bad in [
        JsonList::new("data", refs, none),
        JsonList::new("/data/~2", refs, none),
        JsonList::new("/data", [] as [(&str, &str); 0], none),
        JsonList::new("/data", refs, ["/data"]),
        JsonList::new("/data", refs, ["/data/0/n"]),
        JsonList::new("/meta/list", refs, ["/meta"]),
        JsonList::new("/data", [("a", "/x"), ("b", "/x/id")], none),
    ] {
        let e = bad.unwrap_err();
        assert!(matches!(e, FilterError::Rule { .. }), "{e:?}");
        assert_eq!(e.status(), 500);
    }
    // Two resources may read one field.
    assert!(JsonList::new("/data", [("a", "/id"), ("b", "/id")], none).is_ok());
}

#[test]
fn two_resources_reading_one_field_are_both_asked() {
    let f = JsonList::new(
        "",
        [("company", "/id"), ("partner", "/id")],
        [] as [&str; 0],
    )
    .unwrap();
    let out = f
        .apply(
            br#"[{"id":"p-1"},{"id":"co-1"},{"id":"x"}]"#,
            &only(&[("partner", "p-1"), ("company", "co-1")]),
        )
        .unwrap();
    assert_eq!(&out.body[..], br#"[{"id":"p-1"},{"id":"co-1"}]"#);
}

#[test]
fn items_are_read_as_serde_json_reads_them_whatever_they_hold() {
    // Strings holding quotes, escapes, brackets and commas; nested values;
    // odd spacing; escaped keys; references through arrays. For each item
    // the id the filter reads must be the one serde_json finds.
    let items = [
        r#"{"name": "a \"quoted\" } ] , { [ name", "company_id": "co-1"}"#,
        r#"{"company_id" : "co-2" , "x": "\\", "y": "\\\""}"#,
        r#"{"nested": {"company_id": "no", "deep": [[{"company_id": "no"}]]}, "company_id": "co-3"}"#,
        r#"{"list": [1, -2.5e-3, true, false, null, "]", {"}": "{"}], "company_id": "co-4"}"#,
        r#"{"comp\u0061ny_id": "co-5"}"#,
        r#"{"company_id": "co\"6"}"#,
        r#"{"company_id": "co\\7"}"#,
        r#"{"company_id": -8}"#,
        r#"{"company_id": 9e2}"#,
        "{\n\t\"company_id\"\r\n:\n\"co-10\"\n}",
        r#"{"a": "ë€😀", "company_id": "co-😀"}"#,
        r#"{"company_id": "co-1\u0000"}"#,
        r#"{"x": {}, "y": [], "z": "", "company_id": "co-13"}"#,
        r#"[]"#,
        r#""{\"company_id\": \"co-1\"}""#,
        r#"{"owner": {"company_id": "co-1"}}"#,
    ];
    let body = format!("{{\"data\": [ {} ]}}", items.join(" ,\n "));
    let seen = std::sync::Mutex::new(Vec::new());
    let keep = |_: &str, id: &str| {
        seen.lock().unwrap().push(id.to_string());
        true
    };
    let f = JsonList::new("/data", [("company", "/company_id")], [] as [&str; 0]).unwrap();
    let out = f.apply(body.as_bytes(), &keep).unwrap();
    let expected: Vec<String> = items
        .iter()
        .filter_map(|i| {
            let v: Value = serde_json::from_str(i).unwrap();
            match v.pointer("/company_id")? {
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        })
        .collect();
    // serde_json spells 9e2 as 900.0; the filter passes the digits as
    // written.
    let expected: Vec<String> = expected
        .into_iter()
        .map(|id| if id == "900.0" { "9e2".to_string() } else { id })
        .collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    assert_eq!(out.removed, items.len() - expected.len());
    let kept: Vec<Value> = parse(&out.body)["data"].as_array().unwrap().clone();
    assert_eq!(kept.len(), expected.len());
    assert_eq!(kept[0], serde_json::from_str::<Value>(items[0]).unwrap());
}

#[test]
fn references_may_go_through_arrays_by_index() {
    let body = br#"{"data": [{"owners": [{"id": "u-1"}, {"id": "co-2"}]}, {"owners": [{"id": "co-2"}]}, {"owners": {"1": {"id": "co-2"}}}]}"#;
    let f = JsonList::new("/data", [("company", "/owners/1/id")], [] as [&str; 0]).unwrap();
    let out = f.apply(body, &only(&[("company", "co-2")])).unwrap();
    // The first by index, the third by the object key "1".
    assert_eq!(out.removed, 1);
    assert_eq!(
        &out.body[..],
        br#"{"data": [{"owners": [{"id": "u-1"}, {"id": "co-2"}]},{"owners": {"1": {"id": "co-2"}}}]}"#
    );
}

#[test]
fn strings_of_every_length_with_escapes_anywhere_do_not_confuse_the_reader() {
    // The reader skips strings eight bytes at a time: put quotes,
    // backslashes, multibyte characters and a decoy key at every offset
    // of strings around that width.
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for len in 0..26 {
        for at in 0..=len {
            for insert in [
                r#"\""#,
                r#"\\"#,
                r#"\\\""#,
                "é😀",
                r#"\", \"company_id\": \"x"#,
            ] {
                let mut name = "a".repeat(len);
                name.insert_str(at, insert);
                let id = format!("co-{}", items.len());
                items.push(format!(
                    r#"{{"name": "{name}", "company_id": "{id}", "tail": "{name}"}}"#
                ));
                expected.push(id);
            }
        }
    }
    let body = format!(r#"{{"data": [{}]}}"#, items.join(","));
    // Every item really is JSON with that id.
    for (item, id) in items.iter().zip(&expected) {
        let v: Value = serde_json::from_str(item).unwrap();
        assert_eq!(v["company_id"], *id.as_str());
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let keep = |_: &str, id: &str| {
        seen.lock().unwrap().push(id.to_string());
        id.ends_with('7')
    };
    let out = list().apply(body.as_bytes(), &keep).unwrap();
    assert_eq!(*seen.lock().unwrap(), expected);
    let kept: Vec<_> = parse(&out.body)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["company_id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<_> = expected
        .iter()
        .filter(|i| i.ends_with('7'))
        .cloned()
        .collect();
    assert_eq!(kept, want);
}

#[test]
fn a_list_of_bare_ids_is_filtered_by_the_empty_reference() {
    let f = JsonList::new("/ids", [("company", "")], ["/n"]).unwrap();
    let body = br#"{"n": 3, "ids": ["co-1", 2, "co-3", null]}"#;
    let out = f
        .apply(body, &only(&[("company", "co-3"), ("company", "2")]))
        .unwrap();
    assert_eq!(&out.body[..], br#"{"n": 1, "ids": [2,"co-3"]}"#);
}

#[test]
fn a_reference_key_twice_in_an_item_is_malformed_even_when_escaped() {
    let body = br#"{"data": [{"company_id": "co-1", "company\u005fid": "co-2"}]}"#;
    let reason = malformed(
        list()
            .apply(body, &only(&[("company", "co-1")]))
            .unwrap_err(),
    );
    assert!(reason.contains("twice"), "{reason}");
    let body = br#"{"data": [{"owner": {"company": {"id": "co-1", "id": "x"}}}]}"#;
    let f = JsonList::new("/data", [("company", "/owner/company/id")], [] as [&str; 0]).unwrap();
    malformed(f.apply(body, &only(&[("company", "co-1")])).unwrap_err());
}

#[test]
fn a_key_serde_json_cannot_read_in_an_item_is_malformed() {
    // A lone surrogate passes serde_json's check of the body but not its
    // reading of the key, and the key must be read to know whether it is
    // the reference: the item cannot be judged.
    let body = br#"{"data": [{"\ud800": 1, "company_id": "co-1"}]}"#;
    let reason = malformed(
        list()
            .apply(body, &only(&[("company", "co-1")]))
            .unwrap_err(),
    );
    assert!(
        reason.contains("/data") && reason.contains("Unicode"),
        "{reason}"
    );
}

// === Buffer ===

#[test]
fn a_buffer_refuses_past_its_limit_and_lets_go_of_what_it_held() {
    let mut b = Buffer::new(Limit(10));
    b.expect(1_000_000);
    assert!(b.capacity() < 1_000, "reserves up to the limit only");
    b.push(b"12345").unwrap();
    b.push(b"67890").unwrap();
    assert_eq!(b.bytes(), b"1234567890");
    let e = b.push(b"x").unwrap_err();
    assert!(matches!(e, FilterError::TooLarge { limit: 10 }));
    assert_eq!((e.status(), e.code()), (502, "filter_too_large"));
    assert_eq!(b.len(), 0);
    assert_eq!(b.capacity(), 0);
    // Every later chunk is refused too, and nothing grows.
    for _ in 0..1000 {
        assert!(b.push(&[0; 1024]).is_err());
    }
    assert_eq!(b.capacity(), 0);
    assert!(b.finish().is_err());
}

#[test]
fn a_buffer_within_its_limit_gives_the_whole_body() {
    let mut b = Buffer::new(Limit(10));
    b.push(b"{\"a\":").unwrap();
    b.push(b"1}").unwrap();
    assert_eq!(&b.finish().unwrap()[..], b"{\"a\":1}");
}

// === JSON records ===

#[test]
fn a_single_record_may_be_shown_only_when_a_reference_is_kept() {
    let r = JsonRecord::new("/data", [("company", "/id"), ("partner", "/partner_id")]).unwrap();
    let keep = only(&[("company", "co-1"), ("partner", "p-1")]);
    assert!(r.check(br#"{"data": {"id": "co-1"}}"#, &keep).unwrap());
    assert!(r
        .check(br#"{"data": {"id": "co-2", "partner_id": "p-1"}}"#, &keep)
        .unwrap());
    assert!(!r.check(br#"{"data": {"id": "co-2"}}"#, &keep).unwrap());
    // No reference at all: not shown.
    assert!(!r.check(br#"{"data": {"name": "Acme"}}"#, &keep).unwrap());
    assert!(!r.check(br#"{"data": null}"#, &keep).unwrap());
    // Nothing at the pointer, or no JSON: cannot judge.
    malformed(r.check(br#"{"other": {}}"#, &keep).unwrap_err());
    malformed(r.check(br#"{"data": {"id": "co-1"}"#, &keep).unwrap_err());
}

// === JSON redaction ===

#[test]
fn redaction_removes_only_the_named_fields_of_each_item_in_order() {
    let body = br#"{"data": [{"id": "c-1", "name": "Ann", "email": "a@x", "phone": "1", "owner": {"email": "o@x", "id": 7}}, {"id": "c-2", "name": "Bob"}, 5], "n": 2}"#;
    let r = JsonRedact::new("/data", ["/email", "/phone", "/owner/email"]).unwrap();
    let out = r.apply(body).unwrap();
    assert_eq!(out.removed, 3);
    assert_eq!(
        std::str::from_utf8(&out.body).unwrap(),
        r#"{"data": [{"id":"c-1","name":"Ann","owner":{"id":7}}, {"id": "c-2", "name": "Bob"}, 5], "n": 2}"#
    );
}

#[test]
fn redaction_applies_to_a_single_object_and_removes_every_duplicate() {
    let r = JsonRedact::new("/data", ["/email"]).unwrap();
    let out = r
        .apply(br#"{"data": {"email": "a", "id": 1, "email": "b"}}"#)
        .unwrap();
    assert_eq!(out.removed, 2);
    assert_eq!(&out.body[..], br#"{"data": {"id":1}}"#);
    malformed(r.apply(br#"{"data": "x"}"#).unwrap_err());
    malformed(r.apply(br#"{"nodata": {}}"#).unwrap_err());
    assert!(JsonRedact::new("/data", [""]).is_err());
}

// === HTML ===

fn rules(hide: Hide) -> HtmlRules {
    HtmlRules::new(
        vec![
            HtmlRule {
                selector: "tr.company".into(),
                refs: vec![(
                    "company".into(),
                    IdFrom::Attribute("data-company-id".into()),
                )],
            },
            HtmlRule {
                selector: "a.company-link".into(),
                refs: vec![("company".into(), IdFrom::Href("/companies/{id}".into()))],
            },
        ],
        hide,
        Limit(64 * 1024),
    )
    .unwrap()
}

/// Run `html` through a stream in chunks of `size` bytes.
fn run(rules: &HtmlRules, keep: impl Keep + 'static, html: &str, size: usize) -> (String, usize) {
    let mut s = rules.stream(Arc::new(keep));
    let mut out = Vec::new();
    for chunk in html.as_bytes().chunks(size.max(1)) {
        out.extend_from_slice(&s.write(chunk).unwrap());
    }
    let removed = s.removed();
    out.extend_from_slice(&s.end().unwrap());
    (String::from_utf8(out).unwrap(), removed)
}

const TABLE: &str = r#"<table><tbody>
<tr class="company" data-company-id="co-1"><td>Acme</td></tr>
<tr class="company" data-company-id="co-2"><td>Globex <b>secret</b></td></tr>
<tr class="company"><td>No id</td></tr>
<tr class="other"><td>Footer</td></tr>
</tbody></table>"#;

#[test]
fn html_rows_of_records_not_kept_are_removed_with_their_content_across_chunk_boundaries() {
    let rules = rules(Hide::Remove);
    let expected = "<table><tbody>\n<tr class=\"company\" data-company-id=\"co-1\"><td>Acme</td></tr>\n\n\n<tr class=\"other\"><td>Footer</td></tr>\n</tbody></table>";
    for size in [1, 2, 3, 7, 64, TABLE.len()] {
        let (out, removed) = run(&rules, only(&[("company", "co-1")]), TABLE, size);
        assert_eq!(out, expected, "chunks of {size}");
        assert_eq!(removed, 2, "chunks of {size}");
    }
}

/// Deterministic chunk sizes (xorshift), so a failure names its seed.
fn random_sizes(seed: u64, max: usize) -> impl Iterator<Item = usize> {
    let mut x = seed.max(1);
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % max as u64) as usize + 1
    })
}

/// Run `html` through a stream in random chunks.
fn run_random(rules: &HtmlRules, keep: impl Keep + 'static, html: &str, seed: u64) -> String {
    let mut s = rules.stream(Arc::new(keep));
    let mut out = Vec::new();
    let mut rest = html.as_bytes();
    for size in random_sizes(seed, 40) {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.extend_from_slice(&s.write(chunk).unwrap());
        rest = tail;
    }
    out.extend_from_slice(&s.end().unwrap());
    String::from_utf8(out).unwrap()
}

#[test]
fn html_filtering_gives_the_same_page_whatever_the_chunking() {
    // Ids split mid-attribute, tags split mid-name, both reference kinds.
    let html = r#"<ul><li><a class="company-link" href="/companies/co-1">Acme</a></li><li><a class="company-link" href="/companies/co-2">Globex</a></li></ul>"#
        .to_string()
        + TABLE;
    let rules = rules(Hide::Remove);
    let keep = only(&[("company", "co-1")]);
    let (whole, removed) = run(&rules, keep.clone(), &html, html.len());
    assert_eq!(removed, 3);
    assert!(whole.contains("Acme") && !whole.contains("Globex") && !whole.contains("No id"));
    assert_eq!(run(&rules, keep.clone(), &html, 1).0, whole);
    for seed in 1..=200 {
        assert_eq!(
            run_random(&rules, keep.clone(), &html, seed),
            whole,
            "seed {seed}"
        );
    }
}

#[test]
fn a_page_far_larger_than_the_memory_limit_streams_through_it() {
    // The limit bounds the rewriter's buffers, not the page: over 1 MB of rows
    // pass a 16 KiB limit, fed in 8 KiB chunks.
    let rules = HtmlRules::new(
        vec![HtmlRule {
            selector: "tr".into(),
            refs: vec![("company".into(), IdFrom::Attribute("data-id".into()))],
        }],
        Hide::Remove,
        Limit(16 * 1024),
    )
    .unwrap();
    let mut html = String::from("<table>");
    for i in 0..20_000 {
        html.push_str(&format!(
            "<tr data-id=\"co-{i}\"><td>Company {i} with a long enough name</td></tr>"
        ));
    }
    html.push_str("</table>");
    assert!(html.len() > 1_000_000);
    let keep = |_: &str, id: &str| id.ends_with('7');
    let (out, removed) = run(&rules, keep, &html, 8 * 1024);
    assert_eq!(removed, 18_000);
    assert!(out.contains("co-17\"") && !out.contains("co-18\""));
}

#[test]
fn percent_encoded_link_ids_are_decoded() {
    let rules = rules(Hide::Remove);
    let html = r#"<a class="company-link" href="/companies/caf%C3%A9%20%26%20co">A</a><a class="company-link" href="/companies/caf%c3%a9%20%26%20co/people">B</a><a class="company-link" href="/companies/caf%C3%A9 &amp; co">C</a><a class="company-link" href="/companies/cafe%20%26%20co">D</a>"#;
    let (out, removed) = run(&rules, only(&[("company", "café & co")]), html, 4);
    assert_eq!(removed, 1);
    assert!(
        out.contains(">A<") && out.contains(">B<") && out.contains(">C<"),
        "{out}"
    );
    assert!(!out.contains(">D<"), "{out}");
}

#[test]
fn a_link_whose_path_the_browser_would_resolve_elsewhere_names_nothing() {
    // Each of these starts with a kept id but leads to co-2 in a browser.
    let links = [
        "/companies/co-1/../co-2",
        "/companies/co-1/%2e%2e/co-2",
        "/companies/co-1/%2E./co-2",
        "/companies/co-1\\..\\co-2",
        "/companies/co-1/.\n./co-2",
        "/companies/co-1/./../co-2",
    ];
    let html: String = links
        .iter()
        .enumerate()
        .map(|(i, href)| format!(r#"<a class="company-link" href="{href}">link{i}.</a>"#))
        .collect();
    let (out, removed) = run(&rules(Hide::Remove), only(&[("company", "co-1")]), &html, 7);
    assert_eq!(removed, links.len(), "{out}");
    // A tab or newline inside the id is dropped, as the browser drops it.
    let (out, removed) = run(
        &rules(Hide::Remove),
        only(&[("company", "co-1")]),
        "<a class=\"company-link\" href=\"/compa\tnies/co-\n1\">x</a>",
        3,
    );
    assert_eq!((removed, out.contains(">x<")), (0, true), "{out}");
}

#[test]
fn attribute_ids_are_read_as_the_browser_reads_them() {
    let html = r#"<tr class="company" data-company-id="co&#45;1">a</tr><tr class="company" data-company-id="x&amp;y">b</tr><tr class="company" data-company-id="co&#x2d;2">c</tr>"#;
    let (out, removed) = run(
        &rules(Hide::Remove),
        only(&[("company", "co-1"), ("company", "x&y")]),
        html,
        5,
    );
    assert_eq!(removed, 1);
    assert!(
        out.contains(">a<") && out.contains(">b<") && !out.contains(">c<"),
        "{out}"
    );
}

#[test]
fn href_patterns_read_the_id_from_the_elements_own_link() {
    let links = [
        ("/companies/co-1", true),
        ("/companies/co-1/", true),
        ("/companies/co-1/contacts?tab=2", true),
        ("https://app.example/companies/co-1#top", true),
        ("//app.example/companies/co-1", true),
        ("/companies/co%2D1", true),
        ("/companies/co-1?a=1&amp;b=2", true),
        ("/companies/co-2", false),
        ("/companies/co-11", false),
        ("/companies/", false),
        ("/companiesco-1", false),
        ("/other/companies/co-1", false),
        ("companies/co-1", false),
        ("/companies/%FF", false),
    ];
    let html: String = links
        .iter()
        .enumerate()
        .map(|(i, (href, _))| format!(r#"<a class="company-link" href="{href}">link{i}.</a>"#))
        .collect();
    let (out, removed) = run(
        &rules(Hide::Remove),
        only(&[("company", "co-1")]),
        &html,
        11,
    );
    for (i, (href, shown)) in links.iter().enumerate() {
        assert_eq!(out.contains(&format!("link{i}.")), *shown, "{href}: {out}");
    }
    assert_eq!(removed, links.iter().filter(|(_, s)| !s).count());
}

#[test]
fn href_patterns_may_have_text_around_the_id() {
    let rules = HtmlRules::new(
        vec![HtmlRule {
            selector: "a".into(),
            refs: vec![(
                "report".into(),
                IdFrom::Href("/reports/r-{id}.pdf/view".into()),
            )],
        }],
        Hide::Remove,
        Limit(4096),
    )
    .unwrap();
    let html = r#"<a href="/reports/r-7.pdf/view">A</a><a href="/reports/r-7.pdf/viewer">B</a><a href="/reports/r-8.pdf/view/x">C</a><a href="/reports/7.pdf/view">D</a>"#;
    let (out, _) = run(&rules, only(&[("report", "7"), ("report", "8")]), html, 3);
    assert_eq!(
        out,
        r#"<a href="/reports/r-7.pdf/view">A</a><a href="/reports/r-8.pdf/view/x">C</a>"#
    );
    for bad in ["/companies/", "/companies/{id}/{id}", "companies/{id}"] {
        let e = HtmlRules::new(
            vec![HtmlRule {
                selector: "a".into(),
                refs: vec![("company".into(), IdFrom::Href(bad.into()))],
            }],
            Hide::Remove,
            Limit(4096),
        )
        .unwrap_err();
        assert!(matches!(e, FilterError::Rule { .. }), "{bad}");
    }
}

#[test]
fn selectors_are_compiled_once_and_one_rule_set_serves_many_streams() {
    // A bad selector is refused when the rules are built, not per response.
    let e = HtmlRules::new(
        vec![HtmlRule {
            selector: "tr[".into(),
            refs: vec![("company".into(), IdFrom::Attribute("data-id".into()))],
        }],
        Hide::Remove,
        Limit(4096),
    )
    .unwrap_err();
    assert!(matches!(e, FilterError::Rule { .. }));

    // One compiled set, streams with different decisions, side by side,
    // interleaved and on other threads.
    let rules = rules(Hide::Remove);
    let mut a = rules.stream(Arc::new(only(&[("company", "co-1")])));
    let mut b = rules.stream(Arc::new(only(&[("company", "co-2")])));
    let mut out_a = Vec::new();
    let mut out_b = Vec::new();
    for chunk in TABLE.as_bytes().chunks(9) {
        out_a.extend_from_slice(&a.write(chunk).unwrap());
        out_b.extend_from_slice(&b.write(chunk).unwrap());
    }
    out_a.extend_from_slice(&a.end().unwrap());
    out_b.extend_from_slice(&b.end().unwrap());
    let (a, b) = (
        String::from_utf8(out_a).unwrap(),
        String::from_utf8(out_b).unwrap(),
    );
    assert!(a.contains("Acme") && !a.contains("Globex"));
    assert!(b.contains("Globex") && !b.contains("Acme"));

    let threads: Vec<_> = (0..4)
        .map(|_| {
            let rules = rules.clone();
            std::thread::spawn(move || run(&rules, only(&[("company", "co-2")]), TABLE, 5).1)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 2);
    }
}

#[test]
fn a_stream_can_move_between_threads() {
    fn send<T: Send>(_: &T) {}
    let s = rules(Hide::Remove).stream(Arc::new(only(&[])));
    send(&s);
    let s = std::sync::Mutex::new(s);
    let handle = std::thread::spawn(move || {
        let out = s.lock().unwrap().write(b"<p>hi</p>").unwrap();
        (out, s.into_inner().unwrap().end().unwrap())
    });
    let (a, b) = handle.join().unwrap();
    assert_eq!([&a[..], &b[..]].concat(), b"<p>hi</p>");
}

#[test]
fn nested_matched_elements_are_judged_each_and_a_hidden_one_takes_its_content_along() {
    let rules = HtmlRules::new(
        vec![
            HtmlRule {
                selector: "div.company".into(),
                refs: vec![("company".into(), IdFrom::Attribute("data-id".into()))],
            },
            HtmlRule {
                selector: "div.relationship".into(),
                refs: vec![("relationship".into(), IdFrom::Attribute("data-id".into()))],
            },
        ],
        Hide::Remove,
        Limit(4096),
    )
    .unwrap();
    let html = r#"<div class="company" data-id="co-1">Acme<div class="relationship" data-id="r-1">R1</div><div class="relationship" data-id="r-2">R2</div></div><div class="company" data-id="co-2">Globex<div class="relationship" data-id="r-3">R3</div></div>"#;
    let keep = only(&[
        ("company", "co-1"),
        ("relationship", "r-1"),
        ("relationship", "r-3"),
    ]);
    for size in [1, 4, html.len()] {
        let (out, removed) = run(&rules, keep.clone(), html, size);
        assert_eq!(
            out,
            r#"<div class="company" data-id="co-1">Acme<div class="relationship" data-id="r-1">R1</div></div>"#
        );
        // r-2, co-2; r-3 is kept by the decision but goes with co-2.
        assert_eq!(removed, 2, "chunks of {size}");
    }
}

#[test]
fn notice_mode_replaces_hidden_elements_with_escaped_text() {
    let rules = rules(Hide::Notice("Hidden <record>".into()));
    let html = r#"<ul><li><a class="company-link" href="/companies/co-1">Acme</a></li><li><a class="company-link" href="/companies/co-2">Globex</a></li></ul>"#;
    let (out, removed) = run(&rules, only(&[("company", "co-1")]), html, 3);
    assert_eq!(removed, 1);
    assert_eq!(
        out,
        r#"<ul><li><a class="company-link" href="/companies/co-1">Acme</a></li><li>Hidden &lt;record&gt;</li></ul>"#
    );
}

#[test]
fn a_notice_inside_a_hidden_element_is_not_shown() {
    let rules = HtmlRules::new(
        vec![HtmlRule {
            selector: "div".into(),
            refs: vec![("company".into(), IdFrom::Attribute("data-id".into()))],
        }],
        Hide::Notice("hidden".into()),
        Limit(4096),
    )
    .unwrap();
    let (out, _) = run(
        &rules,
        only(&[]),
        r#"<div data-id="a">x<div data-id="b">y</div></div>"#,
        2,
    );
    assert_eq!(out, "hidden");
}

#[test]
fn an_html_stream_past_its_memory_limit_fails_and_stays_failed() {
    let rules = HtmlRules::new(
        vec![HtmlRule {
            selector: "tr".into(),
            refs: vec![("company".into(), IdFrom::Attribute("data-id".into()))],
        }],
        Hide::Remove,
        Limit(2048),
    )
    .unwrap();
    let mut s = rules.stream(Arc::new(only(&[])));
    // A start tag that never ends must be buffered whole to be matched.
    s.write(b"<tr data-id=\"").unwrap();
    let mut failed = None;
    for _ in 0..100 {
        if let Err(e) = s.write(&[b'x'; 1024]) {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("the limit stops the stream");
    assert!(matches!(e, FilterError::TooLarge { limit: 2048 }), "{e:?}");
    assert!(matches!(s.write(b"more"), Err(FilterError::Failed)));
    assert!(matches!(s.end(), Err(FilterError::Failed)));
}

// === Errors ===

#[test]
fn every_filter_error_is_a_refusal_with_its_own_code() {
    let errors = [
        FilterError::TooLarge { limit: 1 },
        FilterError::malformed("x"),
        FilterError::Failed,
        FilterError::Rule {
            rule: "r".into(),
            reason: "x".into(),
        },
    ];
    let codes: Vec<_> = errors.iter().map(|e| (e.status(), e.code())).collect();
    assert_eq!(
        codes,
        [
            (502, "filter_too_large"),
            (502, "filter_malformed"),
            (502, "filter_failed"),
            (500, "filter_rule"),
        ]
    );
}

#[test]
fn an_element_naming_no_records_is_never_shown() {
    // A total over every customer (an `aggregate` route rule) cannot be
    // recounted for one partner: it goes, whoever the records are.
    let rules = HtmlRules::new(
        vec![
            HtmlRule {
                selector: "div.tiles".into(),
                refs: vec![],
            },
            HtmlRule {
                selector: "tr.company".into(),
                refs: vec![(
                    "company".into(),
                    IdFrom::Attribute("data-company-id".into()),
                )],
            },
        ],
        Hide::Remove,
        Limit(4096),
    )
    .unwrap();
    let html = r#"<div class="tiles"><b>12</b> companies</div><table><tr class="company" data-company-id="co-1"><td>Acme</td></tr></table>"#;
    for size in [1, 7, html.len()] {
        let (out, removed) = run(&rules, only(&[("company", "co-1")]), html, size);
        assert!(!out.contains("tiles") && !out.contains("12"), "{out}");
        assert!(out.contains("Acme"), "{out}");
        assert_eq!(removed, 1);
    }
}
