//! A flood of logins against a running gateway, for measuring what an
//! anonymous client can make it hold (see `bench/login_memory.sh`).
//!
//! Each login is its own connection from its own loopback source address
//! (127.x.y.z, so the per-client limits see many clients), posting JSON
//! credentials with a username of the given size. Prints how many answers
//! of each status came back.
//!
//!     cargo run --release --example login_flood -- --gateway 127.0.0.1:8080 \
//!         --requests 20000 --concurrency 200 --username-bytes 60000 --sources 20000

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

#[derive(Parser)]
struct Args {
    /// The gateway's plain HTTP listener.
    #[arg(long)]
    gateway: SocketAddr,
    /// Logins to send in all.
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Logins in flight at once.
    #[arg(long, default_value_t = 100)]
    concurrency: usize,
    /// Size of each username (a distinct one per login).
    #[arg(long, default_value_t = 1_000)]
    username_bytes: usize,
    /// Distinct source addresses to spread the logins over.
    #[arg(long, default_value_t = 1_000)]
    sources: usize,
    /// Send this `user:password` instead of made-up credentials.
    #[arg(long)]
    valid: Option<String>,
}

/// The `i`-th loopback source address: 127.1.0.1 upwards, skipping .0 and
/// .255 in the last octet.
fn source(i: usize) -> Ipv4Addr {
    let n = i as u32;
    let last = (n % 254) + 1;
    let mid = (n / 254) % 256;
    let high = 1 + (n / (254 * 256)) % 254;
    Ipv4Addr::new(127, high as u8, mid as u8, last as u8)
}

async fn login(args: &Args, i: usize) -> Result<u16, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    let from = SocketAddrV4::new(source(i % args.sources.max(1)), 0);
    socket
        .bind(from.into())
        .map_err(|e| format!("bind {from}: {e}"))?;
    let mut stream = socket
        .connect(args.gateway)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let body = match &args.valid {
        Some(v) => {
            let (u, p) = v.split_once(':').unwrap_or((v, ""));
            serde_json::json!({ "username": u, "password": p })
        }
        None => {
            let mut name = format!("flood-{i}-");
            while name.len() < args.username_bytes {
                name.push('x');
            }
            serde_json::json!({ "username": name, "password": "wrong" })
        }
    }
    .to_string();
    let req = format!(
        "POST /_guise/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        args.gateway,
        body.len(),
        body
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut head = [0u8; 12];
    stream
        .read_exact(&mut head)
        .await
        .map_err(|e| format!("read: {e}"))?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {:?}", String::from_utf8_lossy(&head)))
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    let next = Arc::new(AtomicUsize::new(0));
    let counts: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (args, next, counts) = (args.clone(), next.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.requests {
                    return;
                }
                let key = match tokio::time::timeout(Duration::from_secs(30), login(&args, i)).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => format!("error: {}", e.split(':').next().unwrap_or("")),
                    Err(_) => "timeout".to_string(),
                };
                *counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_default() += 1;
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let counts = counts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    println!(
        "{} logins in {:.1} s: {}",
        args.requests,
        started.elapsed().as_secs_f64(),
        counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
