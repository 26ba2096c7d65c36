//! Real Redis for end-to-end tests: a standalone `redis-server`, a
//! three-master Cluster and a Sentinel-managed master, each on free
//! loopback ports with its files in a temp dir, killed on drop.
//!
//! Readiness is polled with a deadline, never assumed after a fixed sleep.
//! Fixtures talk to the servers with a tiny blocking RESP client (no
//! `redis-cli` process per poll), so they work outside any runtime.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// How long a server may take to answer `PING` after it was started.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// How long a cluster may take to agree on its slots.
const CLUSTER_DEADLINE: Duration = Duration::from_secs(30);

/// A reply, as far as the fixtures need one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a status or bulk reply.
    pub fn text(&self) -> Option<&str> {
        match self {
            Reply::Status(s) | Reply::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }
}

/// Send one command to `127.0.0.1:port` on a fresh connection and read the
/// reply; `Err` if nothing listens or the reply does not come in time.
pub fn command(port: u16, args: &[&str]) -> std::io::Result<Reply> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    read_reply(&mut BufReader::new(s))
}

fn read_reply(r: &mut impl BufRead) -> std::io::Result<Reply> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || rest.parse::<i64>().map_err(|_| bad(line));
    Ok(match kind {
        "+" => Reply::Status(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(num()?),
        "$" => match num()? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => match num()? {
            n if n < 0 => Reply::Array(None),
            n => Reply::Array(Some(
                (0..n).map(|_| read_reply(r)).collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(bad(line)),
    })
}

/// Poll `f` every 20 ms until it is `true` or `timeout` passes.
fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pongs(port: u16) -> bool {
    matches!(command(port, &["PING"]), Ok(Reply::Status(s)) if s == "PONG")
}

/// One `redis-server` process.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Kept for the life of the server: its files (logs, cluster config)
    /// are in here; a restart on the same port reuses it.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// A standalone server on a free port.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A standalone server on a free port with extra arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        // A free port can be taken between our check and the server's
        // bind; try a few.
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            match RedisServer::spawn(free_port(), dir, extra) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// A new standalone server on `port` (after [`RedisServer::kill`] of
    /// the previous one), e.g. to test recovery after a restart.
    pub fn start_on(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        RedisServer::spawn(port, dir, &[])
            .unwrap_or_else(|e| panic!("redis-server did not start on {port}: {e}"))
    }

    fn spawn(port: u16, dir: tempfile::TempDir, extra: &[&str]) -> Result<RedisServer, String> {
        let port_s = port.to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port_s,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ];
        let dir_s = dir.path().display().to_string();
        let log = dir.path().join("redis.log").display().to_string();
        args.extend(["--dir", &dir_s, "--logfile", &log]);
        args.extend(extra);
        let child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run redis-server: {e}"))?;
        let mut server = RedisServer {
            port,
            child: Some(child),
            dir,
        };
        let up = wait_until(START_DEADLINE, || {
            if server.exited() {
                return true;
            }
            pongs(port)
        });
        if !up || server.exited() {
            let log = std::fs::read_to_string(Path::new(&log)).unwrap_or_default();
            server.kill();
            return Err(format!("no PONG on port {port}; log:\n{log}"));
        }
        Ok(server)
    }

    fn exited(&mut self) -> bool {
        match &mut self.child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kill the process (SIGKILL) and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the process (SIGSTOP): connections stay open but nothing
    /// answers, the case only a response timeout catches.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Undo [`RedisServer::freeze`].
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} failed");
        }
    }

    /// Send one command and return its reply.
    pub fn command(&self, args: &[&str]) -> Reply {
        command(self.port, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Calls per command since start (or `CONFIG RESETSTAT`), from
    /// `INFO commandstats`; keys are lower-case command names such as
    /// `get`, `evalsha` or `client|setinfo`.
    pub fn commandstats(&self) -> HashMap<String, u64> {
        let info = self.command(&["INFO", "commandstats"]);
        parse_commandstats(info.text().unwrap_or_default())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmdstat_get:calls=5,usec=...` lines → `{"get": 5}`.
pub fn parse_commandstats(info: &str) -> HashMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// A Redis Cluster of masters only, slots spread by `redis-cli`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` cluster-enabled servers joined into one cluster, returned
    /// once every node reports `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        let ok = wait_until(CLUSTER_DEADLINE, || {
            cluster.nodes.iter().all(|n| {
                command(n.port(), &["CLUSTER", "INFO"])
                    .ok()
                    .and_then(|r| r.text().map(|t| t.contains("cluster_state:ok")))
                    .unwrap_or(false)
            })
        });
        assert!(ok, "cluster did not reach cluster_state:ok");
        cluster
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Index in [`RedisCluster::nodes`] of the master serving `key`.
    pub fn node_for(&self, key: &str) -> usize {
        let slot = match self.nodes[0].command(&["CLUSTER", "KEYSLOT", key]) {
            Reply::Int(n) => n,
            other => panic!("CLUSTER KEYSLOT: {other:?}"),
        };
        let nodes = self.nodes[0].command(&["CLUSTER", "NODES"]);
        // `<id> <ip:port@cport> <flags> <master> <ping> <pong> <epoch>
        // <link> <slot ranges...>`
        let port = nodes
            .text()
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let serves = f.iter().skip(8).any(|r| match r.split_once('-') {
                    Some((a, b)) => {
                        a.parse::<i64>().is_ok_and(|a| a <= slot)
                            && b.parse::<i64>().is_ok_and(|b| slot <= b)
                    }
                    None => r.parse::<i64>() == Ok(slot),
                });
                let port = f.get(1)?.split_once(':')?.1.split('@').next()?;
                serves.then(|| port.parse::<u16>().ok()).flatten()
            })
            .expect("a node serves the slot");
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("the serving node is ours")
    }

    /// Calls per command summed over every node.
    pub fn commandstats(&self) -> HashMap<String, u64> {
        let mut all = HashMap::new();
        for n in &self.nodes {
            for (k, v) in n.commandstats() {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }
}

/// One master watched by one sentinel (quorum 1) under the name `m`.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub sentinel: RedisServer,
}

/// The master name the sentinel watches.
pub const SENTINEL_MASTER: &str = "m";

impl RedisSentinel {
    /// Start both; returned once the sentinel names the master.
    pub fn start() -> RedisSentinel {
        let master = RedisServer::start();
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            // The sentinel rewrites its config file, so it must be its own
            // writable copy.
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
                     logfile {dir}/sentinel.log\n\
                     sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {mport} 1\n\
                     sentinel down-after-milliseconds {SENTINEL_MASTER} 5000\n",
                    dir = dir.path().display(),
                    mport = master.port(),
                ),
            )
            .expect("write sentinel.conf");
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run redis-server --sentinel");
            let mut sentinel = RedisServer {
                port,
                child: Some(child),
                dir,
            };
            let mport = master.port().to_string();
            let named = wait_until(START_DEADLINE, || {
                if sentinel.exited() {
                    return true;
                }
                matches!(
                    command(port, &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER]),
                    Ok(Reply::Array(Some(a))) if a.get(1).and_then(Reply::text) == Some(&mport)
                )
            });
            if named && !sentinel.exited() {
                return RedisSentinel { master, sentinel };
            }
            last = std::fs::read_to_string(sentinel.dir().join("sentinel.log")).unwrap_or_default();
        }
        panic!("sentinel did not start:\n{last}");
    }

    pub fn sentinel_url(&self) -> String {
        self.sentinel.url()
    }
}
