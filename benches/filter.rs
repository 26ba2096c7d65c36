//! Response filtering throughput. Targets: a ~1 MB JSON list (3,400
//! company items under `/data`, half of them kept) at 200 MB/s or more,
//! and the streaming HTML filter over a ~1 MB page with a few thousand
//! matched rows.
//!
//!     cargo bench --bench filter

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use guise::filter::{Hide, HtmlRule, HtmlRules, IdFrom, JsonList, Keep, Limit};

/// Keeps the even-numbered companies: half the items, interleaved, so
/// every other item is cut out.
fn half(_: &str, id: &str) -> bool {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .is_some_and(|n| n % 2 == 0)
}

fn json_list(items: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"data":["#);
    for i in 0..items {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"id":"co-{i}","name":"Company number {i} Holdings Ltd","company_id":"co-{i}","arr":{arr},"industry":"Manufacturing","owner":{{"id":"u-{o}","name":"Owner {o}","email":"owner{o}@example.test"}},"health":"green","tags":["enterprise","emea","renewal-2026"],"created_at":"2025-03-{d:02}T10:00:00Z","score":{score}}}"#,
            arr = 10_000 + i * 37,
            o = i % 50,
            d = 1 + i % 28,
            score = (i % 100) as f64 / 10.0,
        ));
    }
    s.push_str(&format!(r#"],"meta":{{"total":{items},"page":1}}}}"#));
    s.into_bytes()
}

fn html_page(rows: usize) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><title>Companies</title></head><body><table><tbody>\n",
    );
    for i in 0..rows {
        s.push_str(&format!(
            r#"<tr class="company" data-company-id="co-{i}"><td><a href="/companies/co-{i}">Company number {i} Holdings Ltd</a></td><td>Manufacturing</td><td>{arr}</td><td>Owner {o}</td><td><span class="badge">green</span></td></tr>
"#,
            arr = 10_000 + i * 37,
            o = i % 50,
        ));
    }
    s.push_str("</tbody></table></body></html>\n");
    s
}

fn bench(c: &mut Criterion) {
    let body = json_list(3_400);
    let list = JsonList::new("/data", [("company", "/company_id")], ["/meta/total"]).unwrap();
    let out = list.apply(&body, &half).unwrap();
    assert_eq!(out.removed, 1_700);
    eprintln!("JSON list: {} bytes", body.len());

    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("json list, 3400 items, half kept", |b| {
        b.iter(|| list.apply(&body, &half).unwrap())
    });

    let page = html_page(4_000);
    eprintln!("HTML page: {} bytes", page.len());
    let rules = HtmlRules::new(
        vec![HtmlRule {
            selector: "tr.company".into(),
            refs: vec![
                (
                    "company".into(),
                    IdFrom::Attribute("data-company-id".into()),
                ),
                ("company".into(), IdFrom::Href("/companies/{id}".into())),
            ],
        }],
        Hide::Remove,
        Limit(1 << 20),
    )
    .unwrap();
    let keep: Arc<dyn Keep> = Arc::new(half);
    g.throughput(Throughput::Bytes(page.len() as u64));
    // 16 KiB chunks, about what pingora hands a body filter.
    g.bench_function("html stream, 4000 rows, half kept", |b| {
        b.iter(|| {
            let mut s = rules.stream(Arc::clone(&keep));
            let mut n = 0;
            for chunk in page.as_bytes().chunks(16 * 1024) {
                n += s.write(chunk).unwrap().len();
            }
            assert_eq!(s.removed(), 2_000);
            n + s.end().unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
