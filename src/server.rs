//! Assembling and running a gateway: the pingora server with its proxy,
//! operations and reload services.
//!
//! Everything pingora would only discover late (a busy port, a bad
//! certificate) is checked here first, so start-up fails with a clear error
//! and a non-zero exit instead of a panic inside a service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use tokio::sync::oneshot;

use crate::admin::AdminApi;
use crate::audit::{Audit, Sink};
use crate::auth::AuthService;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Env};
use crate::drain::{BeforeExit, Drain, NotDraining, TermSignals};
use crate::events::EventListener;
use crate::gateway::Endpoints;
use crate::live::{Live, SharedLive};
use crate::metrics::Metrics;
use crate::ops::{OpsApp, Prober, ReadyCheck, UpstreamReachable};
use crate::partners::{PartnerGauges, Registry};
use crate::proxy::{ConnectionLimits, GatewayProxy, GuardConnections};
use crate::proxy_protocol::BeforeTls;
use crate::reload::{Reloader, SighupService};
use crate::session::{SessionManager, StoreReady};
use crate::store::redis::{open_store_with, RedisTimeouts};
use crate::store::StoreError;
use crate::tls::{check_pair, TlsError};
use crate::user_sync::UserSync;
use crate::users::Directory;
use crate::welcome::Welcomes;

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({role})")]
    Bind {
        role: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listeners.https: {0}")]
    Certificate(#[from] TlsError),
    #[error("listeners.https: cannot set up TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Compile(String),
    #[error("sessions: {0}")]
    Store(#[from] StoreError),
    #[error("this process already built a gateway with server.work_stealing: false, which must be its only one (pingora 0.9 may hand a later runtime the handles of a stopped no-steal one: cloudflare/pingora#981); a program that runs several gateways must set server.work_stealing: true in every one")]
    SecondNoStealRuntime,
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Whether this process built a gateway with work stealing off; after that
/// it builds no other (see [`StartError::SecondNoStealRuntime`]).
static NO_STEAL_BUILT: AtomicBool = AtomicBool::new(false);

/// How the gateway was configured, for reloads.
pub struct BuildOptions {
    /// The file to re-read on reload; none disables reloading.
    pub config_path: Option<PathBuf>,
    /// Reload on SIGHUP (the binary); tests call [`Reloader::reload`].
    pub reload_on_sighup: bool,
    pub env: Arc<dyn Env + Send + Sync>,
}

/// A built, not yet running gateway.
pub struct Gateway {
    server: Server,
    pub live: SharedLive,
    pub metrics: Metrics,
    pub reloader: Option<Reloader>,
    pub auth: Arc<AuthService>,
    drain: Arc<Drain>,
    grace: Duration,
    shutdown_timeout: Duration,
    /// Finished before the process exits (the audit's buffer).
    before_exit: Vec<Arc<dyn BeforeExit>>,
}

impl Gateway {
    pub fn build(config: Config, opts: BuildOptions) -> Result<Gateway, StartError> {
        preflight(&config)?;
        // The binary builds one gateway; a process that builds more (tests,
        // embedders) must use the work-stealing runtime in all of them, or
        // pingora's stale-handle bug makes later ones serve nothing, silently.
        if NO_STEAL_BUILT.load(Ordering::SeqCst) {
            return Err(StartError::SecondNoStealRuntime);
        }
        let metrics = Metrics::new();
        metrics.set_live_config(&config.hash);

        let work_stealing = config.server.work_stealing;
        // pingora's grace period is the longest the drain may take (see
        // `drain`): the drain watcher ends the process sooner once nothing
        // is in flight. Its runtime shutdown then cancels what is left.
        let mut conf = ServerConf {
            threads: config.server.threads,
            grace_period_seconds: Some(config.server.shutdown_timeout.as_secs()),
            graceful_shutdown_timeout_seconds: Some(1),
            upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
            work_stealing,
            ..ServerConf::default()
        };
        // One connect attempt per request: a down upstream should answer
        // 502 at once rather than after a retry storm.
        conf.max_retries = 1;
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let listeners = config.listeners.clone();
        let trusted = Arc::new(config.server.trusted_proxies.clone());
        let header_timeout = config.server.header_timeout;
        let drain = Drain::new();
        let (grace, shutdown_timeout) =
            (config.server.grace_period, config.server.shutdown_timeout);
        let ops_addr = config.operations_address;
        let probe_interval = config.probe_interval;
        let keepalive_limit = config.server.keepalive_request_limit;

        // Sessions and users: built without touching Redis, which may still
        // be starting; the event listener loads stored users once it runs.
        let settings = config.sessions.clone();
        let store = open_store_with(
            &settings.store,
            RedisTimeouts {
                connect: settings.redis_connect_timeout,
                response: settings.redis_response_timeout,
            },
            Some(metrics.redis_errors.clone()),
        )?;
        let directory = Arc::new(Directory::new());
        let users = UserSync::new(
            directory.clone(),
            store.clone(),
            config.users.clone(),
            metrics.clone(),
        );
        let partners = Registry::new(store.clone(), Arc::new(config.partners.clone()));
        for code in crate::partners::REFUSAL_CODES {
            metrics
                .partner_refusals
                .with_label_values(&[code])
                .inc_by(0);
        }
        for result in ["ok", "refused"] {
            metrics.paired_logins.with_label_values(&[result]).inc_by(0);
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let sessions = SessionManager::new(store.clone(), settings, metrics.clone(), clock.clone());
        let auth = Arc::new(AuthService::new(
            sessions.clone(),
            directory.clone(),
            metrics.clone(),
            &config.auth,
        ));
        let welcome = Arc::new(Welcomes {
            sessions: sessions.clone(),
            directory: directory.clone(),
            metrics: metrics.clone(),
        });
        let impersonation = crate::impersonation::metrics::Metrics::new(&metrics)
            .map_err(|e| StartError::Metrics(e.to_string()))?;
        // The impersonation audit: a Redis Stream, or a JSON-lines file next
        // to the configuration with the memory store.
        let audit_settings = &config.impersonation.audit;
        let config_dir = opts
            .config_path
            .as_deref()
            .and_then(|p| p.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let sink = Sink::from_settings(audit_settings, store.clone(), &config_dir);
        let (audit, audit_writer) = Audit::new(sink, audit_settings.buffer);
        audit
            .register_metrics(&metrics)
            .map_err(|e| StartError::Metrics(e.to_string()))?;
        server.add_service(background_service("impersonation audit", audit_writer));
        let active_impersonations = Arc::new(crate::impersonation::metrics::ActiveGauge {
            sessions: sessions.clone(),
            directory: directory.clone(),
            gauge: impersonation.active.clone(),
        });
        let permission_metrics = crate::permissions::metrics::Metrics::new(&metrics)
            .map_err(|e| StartError::Metrics(e.to_string()))?;
        let permissions = crate::permissions::Permissions::new(
            store.clone(),
            Arc::new(config.permissions.clone()),
            permission_metrics,
        );
        let audit = Arc::new(audit);
        let endpoints = Arc::new(Endpoints {
            auth: auth.clone(),
            admin: AdminApi {
                sessions: sessions.clone(),
                directory: directory.clone(),
                partners: partners.clone(),
                welcome: welcome.clone(),
                permissions: permissions.clone(),
                audit: audit.clone(),
                metrics: metrics.clone(),
            },
            permissions: permissions.clone(),
            partners: partners.clone(),
            welcome,
            audit: audit.clone(),
            impersonation,
        });
        let limits = ConnectionLimits {
            max_open: config.server.max_client_connections,
            header_timeout: config.server.header_timeout,
        };
        server.add_service(background_service(
            "session events",
            EventListener {
                store: store.clone(),
                sinks: vec![
                    sessions.clone(),
                    users.clone(),
                    partners.clone(),
                    permissions.clone(),
                ],
            },
        ));

        let live = Live::build(config).map_err(StartError::Compile)?.shared();

        let mut proxy = pingora::proxy::http_proxy(
            &server.configuration,
            GatewayProxy {
                live: live.clone(),
                metrics: metrics.clone(),
                endpoints,
                clock,
                drain: drain.clone(),
            },
        );
        let mut server_options = HttpServerOptions::default();
        server_options.keepalive_request_limit = keepalive_limit;
        proxy.server_options = Some(server_options);
        let mut proxy_service = Service::new(
            "guise proxy".to_string(),
            GuardConnections::new(
                proxy,
                limits,
                metrics.open_connections.clone(),
                metrics.connections_refused.clone(),
                metrics.header_timeouts.clone(),
            )
            .with_drain(drain.clone())
            .with_proxy_protocol_if(listeners.http_proxy_protocol, trusted.clone()),
        );
        if let Some(addr) = listeners.http {
            proxy_service.add_tcp(&addr.to_string());
        }
        if let Some(https) = &listeners.https {
            let mut tls = TlsSettings::intermediate(
                &https.cert.to_string_lossy(),
                &https.key.to_string_lossy(),
            )
            .map_err(|e| StartError::Tls(e.to_string()))?;
            if https.http2 {
                tls.enable_h2();
            }
            proxy_service.add_tls_with_settings(&https.address.to_string(), None, tls);
            if https.proxy_protocol {
                proxy_service
                    .endpoints()
                    .set_pre_tls_callback(Arc::new(BeforeTls {
                        trusted_proxies: trusted.clone(),
                        timeout: header_timeout,
                    }));
            }
        }
        server.add_service(proxy_service);

        let checks: Vec<Arc<dyn ReadyCheck>> = vec![
            Arc::new(UpstreamReachable {
                live: live.clone(),
                metrics: metrics.clone(),
            }),
            Arc::new(StoreReady(store.clone(), metrics.store_up.clone())),
            Arc::new(NotDraining(drain.clone())),
        ];
        server.add_service(background_service(
            "health probe",
            Prober {
                checks: checks.clone(),
                interval: probe_interval,
            },
        ));
        let mut ops = Service::new(
            "guise operations".to_string(),
            OpsApp::new(
                metrics.clone(),
                checks,
                vec![
                    sessions.clone(),
                    active_impersonations,
                    Arc::new(PartnerGauges {
                        directory,
                        registry: partners.clone(),
                        live: live.clone(),
                        metrics: metrics.clone(),
                    }),
                ],
            ),
        );
        ops.add_tcp(&ops_addr.to_string());
        server.add_service(ops);

        let reloader = opts.config_path.map(|path| Reloader {
            path,
            live: live.clone(),
            metrics: metrics.clone(),
            env: opts.env.clone(),
            users: users.clone(),
            partners,
            permissions,
        });
        if let (Some(r), true) = (&reloader, opts.reload_on_sighup) {
            server.add_service(background_service(
                "config reload",
                SighupService(r.clone()),
            ));
        }

        // Claimed last, so that a build that failed leaves the process free
        // to try again.
        if !work_stealing && NO_STEAL_BUILT.swap(true, Ordering::SeqCst) {
            return Err(StartError::SecondNoStealRuntime);
        }
        Ok(Gateway {
            server,
            live,
            metrics,
            reloader,
            auth,
            drain,
            grace,
            shutdown_timeout,
            before_exit: vec![audit.clone()],
        })
    }

    /// Serve until SIGTERM (drain, see [`crate::drain`]) or SIGINT (at
    /// once); exits the process.
    pub fn run_forever(self) -> ! {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(TermSignals {
                drain: self.drain,
                grace: self.grace,
                timeout: self.shutdown_timeout,
                before_exit: self.before_exit.clone(),
            }),
        });
        crate::drain::finish(&self.before_exit);
        std::process::exit(0)
    }

    /// Serve on a thread of its own until [`Running::stop`]: for the demo
    /// and tests, where the process must outlive the gateway.
    pub fn spawn(self) -> Running {
        let (tx, rx) = oneshot::channel();
        let server = self.server;
        let thread = std::thread::Builder::new()
            .name("guise-gateway".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(tokio::sync::Mutex::new(Some(rx)))),
                })
            })
            .expect("spawn gateway thread");
        Running {
            live: self.live,
            metrics: self.metrics,
            reloader: self.reloader,
            auth: self.auth,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

/// A gateway serving on its own thread.
pub struct Running {
    pub live: SharedLive,
    pub metrics: Metrics,
    pub reloader: Option<Reloader>,
    pub auth: Arc<AuthService>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Shut down and wait for the server thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct StopSignal(tokio::sync::Mutex<Option<oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let rx = self.0.lock().await.take();
        match rx {
            Some(rx) => {
                let _ = rx.await;
            }
            None => std::future::pending::<()>().await,
        }
        ShutdownSignal::FastShutdown
    }
}

/// Fail early on what pingora would only find out when a service starts.
fn preflight(config: &Config) -> Result<(), StartError> {
    if let Some(https) = &config.listeners.https {
        check_pair(&https.cert, &https.key)?;
    }
    let mut addrs = vec![("operations", config.operations_address)];
    if let Some(a) = config.listeners.http {
        addrs.push(("http listener", a));
    }
    if let Some(h) = &config.listeners.https {
        addrs.push(("https listener", h.address));
    }
    for (role, addr) in addrs {
        probe_bind(addr).map_err(|source| StartError::Bind { role, addr, source })?;
    }
    Ok(())
}

/// Bind and listen like pingora does (SO_REUSEADDR, so sockets in TIME_WAIT
/// from a previous run do not count as busy), then let go.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)?;
    Ok(())
}
