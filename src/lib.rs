//! guise: a reverse-proxy gateway that gives a legacy web application
//! logins, sessions, impersonation, partners and data permissions without
//! changing it.
//!
//! Layout, in the order a request meets it:
//! - [`server`] builds and runs the pingora server: proxy, operations and
//!   reload services, with start-up checks pingora itself lacks.
//! - [`proxy`] is the `ProxyHttp` wiring: each hook calls the module that
//!   owns the concern and keeps results in its per-request context.
//! - [`auth`] intercepts logins and logouts and decides who a request
//!   comes from; [`admin`] is the admin API; [`session`] keeps sessions in
//!   a per-node cache over the [`store`] (memory or Redis); [`users`] is
//!   the user directory, kept in step across nodes by [`user_sync`].
//! - [`identity`] strips client-sent identity headers and signs the ones
//!   guise sends upstream.
//! - [`routes`] compiles the route table and matches requests to it.
//! - [`respond`] turns refusals into HTML or JSON answers.
//! - [`live`] holds what a reload swaps: config and compiled routes.
//! - [`config`] reads and checks the YAML file; [`reload`] re-reads it.
//! - [`ops`] serves `/metrics`, `/healthz`, `/readyz`; [`metrics`] owns
//!   the gateway's Prometheus registry.
//! - [`tls`] checks certificate files and makes development ones.
//! - [`demo_upstream`] is the bundled legacy app used by the demo, the
//!   tests and the benchmarks.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod call;
pub mod clock;
pub mod config;
pub mod csrf;
pub mod demo_upstream;
pub mod events;
pub mod forwarded;
pub mod fuzzing;
pub mod gateway;
pub mod identity;
pub mod live;
pub mod metrics;
pub mod ops;
pub mod peer;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod routes;
pub mod server;
pub mod session;
pub mod store;
pub mod subject;
pub mod target;
pub mod tls;
pub mod user_sync;
pub mod users;
