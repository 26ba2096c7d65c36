//! The `guise` command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use guise::config::{Config, LogFormat, ProcessEnv};
use guise::demo_upstream::DemoHandle;
use guise::server::{BuildOptions, Gateway};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The demo's configuration, built in so `guise demo` runs from anywhere.
const DEMO_CONFIG: &str = include_str!("../config/demo.yaml");

#[derive(Parser)]
#[command(
    name = "guise",
    version,
    about = "A reverse-proxy gateway for legacy web apps"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway from a YAML file (SIGHUP reloads it).
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the bundled demo app behind the gateway, with the in-memory store.
    Demo {
        /// Gateway address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Demo upstream address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        upstream: SocketAddr,
        /// Operations (metrics, health) address.
        #[arg(long, default_value = "127.0.0.1:9090")]
        operations: SocketAddr,
        /// Folder welcome emails are written to (as .eml files) instead of
        /// being sent.
        #[arg(long, default_value = "guise-demo-outbox")]
        outbox: PathBuf,
    },
    /// Check a configuration file: exit 0 if good, else print every problem and exit 2.
    CheckConfig { file: PathBuf },
    /// Write a development CA, certificate and key (for localhost) into a folder.
    GenCert {
        #[arg(long, default_value = "certs")]
        out: PathBuf,
        /// A name the certificate is valid for: a DNS name or an IP address.
        /// Repeat for several; given names replace the defaults.
        #[arg(long = "name", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        names: Vec<String>,
    },
    /// Run only the bundled demo app (for benchmarks and experiments).
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Hash a password for a user's `password_hash`: reads one line from
    /// stdin, prints the argon2id PHC string.
    HashPassword {
        /// Read the password from stdin without prompting (for scripts).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import records into the store a configuration names (Redis), where
    /// every running gateway picks them up.
    #[command(subcommand)]
    Import(Import),
}

#[derive(Subcommand)]
enum Import {
    /// Partners and partner users from a CRM export: CSV with the columns
    /// partner_id, partner_name, user_name, user_email, company_ids (ids
    /// separated by `;`) and optionally relationship_ids. Every bad row is
    /// reported with its line; a file with bad rows imports nothing unless
    /// --skip-bad-rows is given. Importing the same file again changes
    /// nothing.
    Partners {
        file: PathBuf,
        /// The gateway's configuration file (for its store and seats).
        #[arg(long, short)]
        config: PathBuf,
        /// Import the good rows of a file that has bad ones.
        #[arg(long)]
        skip_bad_rows: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::Demo {
            listen,
            upstream,
            operations,
            outbox,
        } => demo(listen, upstream, operations, &outbox),
        Command::CheckConfig { file } => return check_config(&file),
        Command::GenCert { out, names } => gen_cert(&out, &names),
        Command::DemoUpstream { listen } => demo_upstream(listen),
        Command::HashPassword { password_stdin } => hash_password(password_stdin),
        Command::Import(Import::Partners {
            file,
            config,
            skip_bad_rows,
        }) => import_partners(&file, &config, skip_bad_rows),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("guise: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &Path) -> anyhow::Result<()> {
    let config = match Config::load(path, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("guise: refusing to start: {e}");
            std::process::exit(2);
        }
    };
    init_logging(config.logging.format, &config.logging.level);
    tracing::info!(config = %path.display(), hash = %config.hash, "configuration loaded");
    let gateway = Gateway::build(
        config,
        BuildOptions {
            config_path: Some(path.to_path_buf()),
            reload_on_sighup: true,
            env: Arc::new(ProcessEnv),
        },
    )
    .context("refusing to start")?;
    gateway.run_forever()
}

fn demo(
    listen: SocketAddr,
    upstream: SocketAddr,
    operations: SocketAddr,
    outbox: &Path,
) -> anyhow::Result<()> {
    // The demo needs no secrets from the operator: a fresh signing key per
    // run unless one is given.
    let key = std::env::var("GUISE_SIGNING_KEY").unwrap_or_else(|_| random_key());
    let env = move |name: &str| (name == "GUISE_SIGNING_KEY").then(|| key.clone());
    let mut config = Config::parse(DEMO_CONFIG, "config/demo.yaml", Path::new("."), &env)
        .context("the built-in demo configuration is invalid")?;
    config.listeners.http = Some(listen);
    config.upstream.address = upstream;
    config.upstream.authority = upstream.to_string();
    config.operations_address = operations;
    let outbox = std::path::absolute(outbox)
        .with_context(|| format!("cannot resolve the outbox folder {}", outbox.display()))?;
    if let Some(mail) = &mut config.mail {
        mail.transport = guise::config::MailTransport::Outbox(outbox.clone());
    }
    // The demo's audit file, where the demo says it is.
    let audit = config
        .impersonation
        .audit
        .file
        .clone()
        .unwrap_or_else(|| guise::config::impersonation::DEFAULT_AUDIT_FILE.into());
    let audit = std::path::absolute(&audit).unwrap_or(audit);
    init_logging(config.logging.format, &config.logging.level);
    let demo_users: String = config
        .users
        .iter()
        .map(|u| {
            let mut about = u.role_names().join(", ");
            if let Some(p) = &u.partner {
                about.push_str(&format!(
                    "; partner user of {p}, bundle {}",
                    u.bundle
                        .as_deref()
                        .unwrap_or(&config.partners.default_bundle)
                ));
                if u.licence != guise::users::Licence::Full {
                    about.push_str("; no Full licence, so refused at sign-in");
                }
            }
            format!("  {:<20} {} ({about}), id {}\n", u.email, u.name, u.id)
        })
        .collect();

    // The demo app checks that identity headers really come from guise.
    let verifier = guise::identity::UpstreamVerifier::new(
        config.identity.signing_key.clone(),
        &config.identity.header_prefix,
    );
    let app = DemoHandle::start_app(
        upstream,
        guise::demo_upstream::DemoUpstream::new().with_identity_check(Arc::new(verifier)),
    )
    .with_context(|| format!("cannot start the demo upstream on {upstream}"))?;
    let gateway = Gateway::build(
        config,
        BuildOptions {
            config_path: None,
            reload_on_sighup: false,
            env: Arc::new(env),
        },
    )
    .context("refusing to start")?;
    println!(
        "guise demo\n  gateway:     http://{listen}/\n  demo app:    http://{} (direct, no gateway)\n  operations:  http://{operations}/metrics  /healthz  /readyz\n  outbox:      {} (welcome emails land here as .eml files)\n\nSign in at http://{listen}/login with password `demo` as one of:\n{}\nPartner users see only their partner's customers; their client accounts (\"Login as me\") are at http://{listen}/_guise/partner.\nAdmins: http://{listen}/_guise/admin lists partners and users. As admin@demo.test, \"Login as Partner User\" shows you the app as that user\n(your other tabs are signed out meanwhile; Gia's contacts stay hidden from you); the banner's \"Return to admin\" brings you back.\nEvery step is audited in {} (also GET /_guise/admin/audit); Send Welcome Email writes to the outbox.\nData permissions: bu1@demo.test sees Account 100's Product A relationships, bu2@demo.test its Spark ones (http://{listen}/companies/co-100);\nthe admin page explains any decision, and /_guise/admin/permissions changes the rules on the fly.\n\nPress Ctrl-C to stop.",
        app.addr,
        outbox.display(),
        demo_users,
        audit.display()
    );
    gateway.run_forever()
}

fn check_config(file: &Path) -> ExitCode {
    match Config::load(file, &ProcessEnv) {
        Ok(c) => {
            println!("{}: ok (hash {})", file.display(), c.hash);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn import_partners(file: &Path, config: &Path, skip_bad_rows: bool) -> anyhow::Result<()> {
    let config = Config::load(config, &ProcessEnv).map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let s = &config.sessions;
        let store = guise::store::redis::open_store_with(
            &s.store,
            guise::store::redis::RedisTimeouts {
                connect: s.redis_connect_timeout,
                response: s.redis_response_timeout,
            },
            None,
        )?;
        anyhow::Ok(
            guise::partners::import::into_store(&config, &*store, &csv, skip_bad_rows)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        )
    })?;
    for e in &report.skipped {
        eprintln!("{}: skipped {e}", file.display());
    }
    println!(
        "{}: {} partner(s) and {} user(s) saved, {} row(s) skipped",
        file.display(),
        report.partners_saved,
        report.users_saved,
        report.skipped.len()
    );
    Ok(())
}

fn gen_cert(out: &Path, names: &[String]) -> anyhow::Result<()> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let certs = guise::tls::DevCerts::generate(&names)?;
    let [ca, cert, key] = certs.write_to(out)?;
    println!(
        "wrote {} (trust this in your client), {} and {} (use these in listeners.https)",
        ca.display(),
        cert.display(),
        key.display()
    );
    Ok(())
}

fn demo_upstream(listen: SocketAddr) -> anyhow::Result<()> {
    init_logging(LogFormat::Text, "warn");
    let app = DemoHandle::start(listen).with_context(|| format!("cannot listen on {listen}"))?;
    println!("demo upstream on http://{}", app.addr);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    app.stop();
    Ok(())
}

fn random_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(guise::log_limit::default_directives(level))
    });
    // Repeated warnings and errors: one line per call site per interval,
    // then a count (see guise::log_limit).
    let limit = guise::log_limit::RepeatLimit::new(std::time::Duration::from_secs(10));
    limit.summarise_every_interval();
    // Colour codes only for a person at a terminal: a log redirected to a
    // file or collected by journald must be plain text. Logs go to
    // standard error, keeping standard output for what a command prints
    // (the demo's addresses, check-config's verdict).
    use std::io::IsTerminal;
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Json => fmt.json().with_filter(limit).boxed(),
        LogFormat::Text => fmt.with_filter(limit).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(fmt).init();
}

/// `guise hash-password`: the password comes on stdin, never as an argument
/// (arguments are visible to every local user in the process list).
fn hash_password(password_stdin: bool) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if !password_stdin && stdin.is_terminal() {
        eprint!("Password (echoed as typed): ");
    }
    let plain = guise::users::read_password_line(&mut stdin.lock())?;
    println!("{}", guise::users::hash_password(&plain)?);
    Ok(())
}
