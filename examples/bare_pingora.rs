//! A bare pingora 0.9 reverse proxy: the framework's own limit, used as a
//! peer in the load benchmarks (`bench/run.sh`). No guise code on purpose.
//! It runs with the server settings guise runs with by default (one worker
//! thread, work stealing off), so the two differ only by guise's own work.
//!
//! Usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR
//!   e.g. bare_pingora 127.0.0.1:18082 127.0.0.1:18081

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: {} LISTEN_ADDR UPSTREAM_ADDR", args[0]);
        std::process::exit(2);
    }
    let upstream: SocketAddr = args[2].parse().unwrap_or_else(|e| {
        eprintln!("bad UPSTREAM_ADDR {:?}: {e}", args[2]);
        std::process::exit(2);
    });

    let conf = ServerConf {
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    proxy.add_tcp(&args[1]);
    server.add_service(proxy);
    server.run_forever();
}
