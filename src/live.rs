//! The part of the gateway that a reload replaces: the checked config and
//! everything compiled from it.
//!
//! Each request takes one `Arc<Live>` snapshot when it starts and uses it to
//! the end, so a reload swaps settings atomically for new requests while
//! requests in flight finish under the configuration they began with.

use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::config::Config;
use crate::identity::Signer;
use crate::mail::{self, Mailer};
use crate::metrics::{RequestHandles, UNROUTED_LABELS};
use crate::respond::Replies;
use crate::routes::RouteTable;

/// The live configuration, shared by every hook and swapped on reload.
pub type SharedLive = Arc<ArcSwap<Live>>;

pub struct Live {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    /// The upstream peer with its timeouts set; cloned per request, which is
    /// cheaper than building one and keeps the pool key stable.
    pub peer: HttpPeer,
    /// Signs identity headers with the configured key and prefix.
    pub signer: Signer,
    /// Headers every answer of the gateway's own carries.
    pub replies: Replies,
    /// Delivers welcome emails; `None` without a `mail` section.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// Each route's per-request metric handles (then those of
    /// [`UNROUTED_LABELS`]), resolved on first use.
    pub request_metrics: RequestHandles,
}

impl Live {
    /// Compile `config`. The config was validated, so route compilation
    /// cannot fail here; if it somehow does, the error says why.
    pub fn build(config: Config) -> Result<Live, String> {
        let routes =
            RouteTable::compile(&config.routes).map_err(|(i, e)| format!("routes[{i}]: {e}"))?;
        let up = &config.upstream;
        let mut peer = HttpPeer::new(up.address, up.tls, up.sni.clone());
        peer.options.connection_timeout = Some(up.connect_timeout);
        peer.options.total_connection_timeout = Some(up.connect_timeout * 2);
        peer.options.read_timeout = Some(up.read_timeout);
        peer.options.write_timeout = Some(up.write_timeout);
        peer.options.idle_timeout = Some(up.idle_timeout);
        peer.options.verify_cert = up.verify_certificate;
        peer.options.verify_hostname = up.verify_certificate;
        let signer = Signer::new(&config.identity.signing_key, &config.identity.header_prefix);
        let hsts = match &config.http.hsts {
            Some(v) => Some(
                http::HeaderValue::from_str(v)
                    .map_err(|e| format!("http.hsts: not a header value: {e}"))?,
            ),
            None => None,
        };
        let mailer = match &config.mail {
            Some(m) => Some(mail::build(m).map_err(|e| e.to_string())?),
            None => None,
        };
        let request_metrics = RequestHandles::new(routes.routes().len() + UNROUTED_LABELS.len());
        Ok(Live {
            mailer,
            request_metrics,
            config: Arc::new(config),
            routes,
            peer,
            signer,
            replies: Replies { hsts },
        })
    }

    pub fn shared(self) -> SharedLive {
        Arc::new(ArcSwap::from_pointee(self))
    }
}
