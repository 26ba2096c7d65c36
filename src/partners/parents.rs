//! Where a record reached by its own id sits.
//!
//! A partner user reaches everything inside the companies and
//! relationships assigned to their partner, whoever created it (the FAQ's
//! example: all CTAs of an assigned company). A request such as
//! `PATCH /api/ctas/cta-11` names only the CTA; which company holds it is
//! in the app's record. Stage 7 reads that record from the upstream
//! (a [`Lookup`] under the gateway's service identity), takes the parent
//! ids from the fields `partners.parents` names, and keeps them for
//! `partners.lookup_seconds`, so a burst of requests on one record costs
//! one lookup.
//!
//! Reads are also filtered on the way back; a write can only be stopped
//! here, before it reaches the app.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::PartnerError;
use crate::config::partners::ParentSpec;
use crate::live::Live;
use crate::lookup::{scalar_text, Fetched, Lookup};

/// The user id lookups of parents are signed with; upstreams that check
/// identity headers should let it read every record.
pub const SERVICE_USER: &str = "guise-partners";

/// A record's parents: `(resource, id)`.
pub type Found = Arc<[(String, String)]>;

/// Parents looked up by this node, briefly kept.
pub struct Parents {
    /// `(resource, id)` → when it was read, and the parents.
    cache: moka::future::Cache<(String, String), (Instant, Found)>,
    lookup: Lookup,
}

impl Default for Parents {
    fn default() -> Self {
        Parents {
            // Entries are checked against the configured time when read
            // (a reload may shorten it); this only bounds memory.
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            lookup: Lookup::new(SERVICE_USER),
        }
    }
}

impl Parents {
    /// The parents of record `id` of `spec.resource`: none when the app has
    /// no such record (so it is refused as any unassigned one is, and the
    /// answer tells nothing of what exists). A lookup that fails refuses
    /// the request: without the parents nothing says it is allowed.
    ///
    /// Concurrent requests for one record share one lookup (moka's
    /// `try_get_with`): a burst on a record nobody asked for yet would
    /// otherwise send the app one lookup per request. Neither a missing
    /// record nor a failure is kept, so the next request asks again (a
    /// record made a moment later is found at once).
    pub async fn of(
        &self,
        live: &Live,
        spec: &ParentSpec,
        id: &str,
        ttl: Duration,
        unix_now: u64,
    ) -> Result<Found, PartnerError> {
        if ttl.is_zero() {
            return Ok(self
                .read(live, spec, id, unix_now)
                .await?
                .unwrap_or_else(|| Arc::from([])));
        }
        let key = (spec.resource.clone(), id.to_string());
        if let Some((at, found)) = self.cache.get(&key).await {
            if at.elapsed() < ttl {
                return Ok(found);
            }
            // Kept longer than the configured time (a reload may have
            // shortened it): read again.
            self.cache.invalidate(&key).await;
        }
        let read = self
            .cache
            .try_get_with(key, async {
                match self.read(live, spec, id, unix_now).await {
                    Ok(Some(found)) => Ok((Instant::now(), found)),
                    Ok(None) => Err(NotKept::Missing),
                    Err(e) => Err(NotKept::Failed(e)),
                }
            })
            .await;
        match read {
            Ok((_, found)) => Ok(found),
            Err(e) => match &*e {
                NotKept::Missing => Ok(Arc::from([])),
                NotKept::Failed(e) => Err(e.clone()),
            },
        }
    }

    /// One lookup: the parents named in the app's record, `None` when it
    /// has no such record.
    async fn read(
        &self,
        live: &Live,
        spec: &ParentSpec,
        id: &str,
        unix_now: u64,
    ) -> Result<Option<Found>, PartnerError> {
        let got = self
            .lookup
            .record(live, &spec.path, &spec.pointer, id, unix_now)
            .await;
        match got {
            Fetched::Found(record) => Ok(Some(
                spec.refs
                    .iter()
                    .filter_map(|(resource, field)| {
                        let id = record.pointer(field).and_then(scalar_text)?;
                        Some((resource.clone(), id))
                    })
                    .collect(),
            )),
            Fetched::Missing => Ok(None),
            Fetched::Failed => Err(PartnerError::LookupFailed {
                resource: spec.resource.clone(),
            }),
        }
    }
}

/// Why a lookup's answer is not kept.
enum NotKept {
    Missing,
    Failed(PartnerError),
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::config::Config;

    /// An app whose every record sits in company `co-1`, but for `gone`,
    /// which it does not have; it counts the requests it answers.
    async fn app(hits: Arc<AtomicUsize>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hits = hits.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<_>| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let missing = req.uri().path().ends_with("/gone");
                        async move {
                            let mut r = hyper::Response::new(Full::new(Bytes::from_static(
                                br#"{"data":{"company_id":"co-1"}}"#,
                            )));
                            if missing {
                                *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                            }
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn live(upstream: std::net::SocketAddr) -> Live {
        let yaml = format!(
            "listeners:\n  http: 127.0.0.1:1\nupstream:\n  address: {upstream}\nidentity:\n  signing_key_env: GUISE_TEST_KEY\n"
        );
        let env = |name: &str| (name == "GUISE_TEST_KEY").then(|| "k".repeat(32));
        let config = Config::parse(&yaml, "test.yaml", Path::new("."), &env).expect("config");
        Live::build(config).expect("live")
    }

    fn spec() -> ParentSpec {
        ParentSpec {
            resource: "cta".into(),
            path: "/api/ctas/{id}".into(),
            pointer: "/data".into(),
            refs: vec![("company".into(), "/company_id".into())],
        }
    }

    #[tokio::test]
    async fn concurrent_requests_for_one_record_share_one_lookup() {
        let hits = Arc::new(AtomicUsize::new(0));
        let live = live(app(hits.clone()).await);
        let parents = Parents::default();
        let spec = spec();
        let ttl = Duration::from_secs(5);
        let all = futures_util::future::join_all(
            (0..8).map(|_| parents.of(&live, &spec, "cta-11", ttl, 0)),
        )
        .await;
        for found in all {
            assert_eq!(
                &*found.expect("found"),
                &[("company".to_string(), "co-1".to_string())]
            );
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1, "one lookup for eight");
        // Kept: the next request asks nobody.
        parents.of(&live, &spec, "cta-11", ttl, 0).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // Another record is looked up on its own.
        parents.of(&live, &spec, "cta-12", ttl, 0).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        // A record the app does not have has no parents, and is asked for
        // again next time.
        for n in [3, 4] {
            let found = parents.of(&live, &spec, "gone", ttl, 0).await.unwrap();
            assert!(found.is_empty());
            assert_eq!(hits.load(Ordering::SeqCst), n);
        }
    }

    #[tokio::test]
    async fn with_no_time_to_keep_every_request_looks_up() {
        let hits = Arc::new(AtomicUsize::new(0));
        let live = live(app(hits.clone()).await);
        let parents = Parents::default();
        for _ in 0..2 {
            parents
                .of(&live, &spec(), "cta-11", Duration::ZERO, 0)
                .await
                .unwrap();
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }
}
