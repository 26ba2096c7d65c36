//! guise: a reverse-proxy gateway that gives a legacy web application
//! logins, sessions, impersonation, partners and data permissions without
//! changing it.
//!
//! # The request's way
//!
//! `request_filter` of [`proxy::GatewayProxy`] runs the stages in order, each
//! one call into the module that owns it:
//!
//! 1. [`identity`] strips every client header an upstream could read as an
//!    identity header;
//! 2. [`target`] checks the request target and Host, and puts the path in
//!    the normal form the upstream will receive;
//! 3. [`routes`] classifies the request once: a gateway endpoint, the login
//!    path, or a route;
//! 4. [`auth`] identifies the session behind the cookie as a [`subject`]
//!    (actor, effective user, session), through [`session`]'s per-node
//!    cache over the [`store`];
//! 5. [`gateway`] answers the gateway's own endpoints ([`auth`]'s login and
//!    logout, [`admin`]'s API);
//! 6. [`auth::policy`] requires a login where a page needs one;
//! 7. [`partners`]: a partner user's licence, bundle and assigned records
//!    (a record reached by its own id is placed by a [`lookup`] of its
//!    parents; a write's body is read by [`body`] and names only
//!    assigned ones), and a paired user's tenant;
//!    then [`impersonation::privacy`]: what an impersonator may not see;
//! 8. [`permissions`]: the data-permission decision on the records the
//!    request names (with [`lookup`]s where the rules need the record).
//!
//! The upstream request then gets [`forwarded`] headers and the subject's
//! signed identity headers ([`subject::Subject::sign_onto`]). Every stage's
//! refusal is an error implementing [`respond::Refuse`], answered in one
//! place as HTML or JSON.
//!
//! # The rest
//!
//! - [`server`] builds and runs the pingora server: proxy (with the
//!   connection guard in `proxy::connections`), operations and reload
//!   services, with start-up checks pingora itself lacks; [`drain`] is
//!   what SIGTERM does.
//! - [`live`] holds what a reload swaps: config and everything compiled
//!   from it; [`config`] reads and checks the YAML file; [`reload`] re-reads
//!   it.
//! - [`audit`] records every step of an impersonation and every request
//!   made during one: buffered in memory, written in the background to a
//!   Redis Stream or a file, and refused (fail closed) when it cannot be.
//! - [`users`] is the user directory, kept in step across nodes by
//!   [`user_sync`] through the store's [`events`].
//! - [`peer`] (the client connection), [`call`] (what an endpoint handler
//!   gets), [`body`] (bounded request bodies), [`csrf`] and [`clock`] are
//!   small pieces the stages share.
//! - [`ops`] serves `/metrics`, `/healthz`, `/readyz`; [`metrics`] owns the
//!   gateway's Prometheus registry.
//! - [`filter`] rewrites upstream responses so they hold only the records
//!   the request's decision keeps: JSON lists and records, redacted
//!   fields, HTML list pages streamed through lol_html.
//! - [`tab`] tells a browser tab that its session is no longer the
//!   browser's (another tab started impersonating, or signed out): the
//!   snippet injected into pages, its script and stylesheet, the banner
//!   shown while impersonating, and the `/_guise/events` stream.
//! - [`tls`] checks certificate files and makes development ones.
//! - [`demo_upstream`] is the bundled legacy app used by the demo, the
//!   tests and the benchmarks.
//!
//! Modules form layers: none reaches back to itself through others
//! (`tests/layout.rs` checks it).
#![forbid(unsafe_code)]
// Library code answers errors; a panic takes a proxy task down with it.
// Unit tests may unwrap (see .clippy.toml).
#![deny(clippy::unwrap_used)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod call;
pub mod clock;
pub mod config;
pub mod csrf;
pub mod demo_upstream;
pub mod drain;
pub mod events;
pub mod filter;
pub mod forwarded;
pub mod fuzzing;
pub mod gateway;
pub mod identity;
pub mod impersonation;
pub mod live;
pub mod log_limit;
pub mod lookup;
pub mod mail;
pub mod metrics;
pub mod ops;
pub mod partners;
pub mod peer;
pub mod permissions;
pub mod proxy;
pub mod proxy_protocol;
pub mod reload;
pub mod respond;
pub mod routes;
pub mod server;
pub mod session;
pub mod store;
pub mod subject;
pub mod tab;
pub mod target;
pub mod tenants;
pub mod tls;
pub mod user_sync;
pub mod users;
pub mod welcome;
