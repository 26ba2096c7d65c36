#!/usr/bin/env python3
"""Measuring helper for bench/scale.sh (standard library only).

    scale_probe.py revoke --nodes P1,P2,... --redis H:P[,H:P...] --redis-pids PID[,PID...]
                          --count N --out FILE.json
    scale_probe.py load   --nodes P1,P2,... --redis ... --redis-pids ... --sessions S
                          --duration SECONDS --path PATH --wrk-core C --out FILE.json

`revoke`: logs in N sessions (one at a time, through the nodes in turn),
makes every node cache each one (GET /_guise/session on every node answers
200), then for each session: keeps one outstanding GET /_guise/session on
every node (a tight loop over keep-alive connections, all nodes at once in
one select loop), sends POST /_guise/logout for it to one node (node i mod
n), and records, per node, when the first refusal (not 200) came back.
Latency of a (revocation, node) pair = receipt of that node's first refusal
minus the moment the logout request was sent ("from sent"), and minus the
moment the logout answer arrived ("after returned"; negative when the node
refused before the revoking call had even returned). Both include one poll
round trip. Around the revocations (after every session is cached
everywhere, so nothing else touches Redis) it reads INFO, PUBSUB NUMSUB,
CLIENT LIST and CLUSTER INFO from every Redis and /proc/PID/io of every
redis-server, and an own SUBSCRIBE on guise:events counts the messages and
their bytes. An idle window of the same length before the revocations gives
Redis's background CPU, which is subtracted.

`load`: logs in S sessions, warms every node with every session, then runs
one wrk per node (a Lua script sends the S cookies in turn, so every node
sees every session: no sticky balancing) for a warm-up and a measured
window, and reads Redis's INFO commandstats/stats/cpu before and after the
measured window.
"""

import argparse
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time

HOST = "127.0.0.1"
USER = "bench@bench.test"
PASSWORD = "bench-pass"  # benchmark-only value of bench/guise-bench-login.yaml
COOKIE = "guise_session"
# Commands the probe itself sends; left out of the per-request figures.
PROBE_COMMANDS = {"info", "pubsub|numsub", "client|list", "cluster|info", "subscribe"}


def log(msg):
    print(f"[scale-probe {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ RESP


class Redis:
    """A blocking RESP2 client for a handful of admin commands."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.addr = addr
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"redis {self.addr} closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"redis {self.addr} closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis {self.addr}: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"redis {self.addr}: unexpected reply {line!r}")

    def cmd(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        self.sock.sendall(b"".join(out))
        return self._reply()


def parse_info(text):
    info = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        info[k] = v
    return info


def redis_snapshot(addrs, pids):
    """What every Redis has done so far: commands, cpu, bytes, pub/sub."""
    snap = {"t": time.perf_counter(), "servers": []}
    for i, addr in enumerate(addrs):
        r = Redis(addr)
        info = parse_info(r.cmd("INFO", "all"))
        cmds = {}
        for k, v in info.items():
            if k.startswith("cmdstat_"):
                f = dict(kv.split("=", 1) for kv in v.split(","))
                cmds[k[len("cmdstat_"):]] = {"calls": int(f["calls"]), "usec": int(f["usec"])}
        numsub = r.cmd("PUBSUB", "NUMSUB", "guise:events")
        clients = r.cmd("CLIENT", "LIST")
        cluster = {}
        if info.get("cluster_enabled") == "1":
            cluster = parse_info(r.cmd("CLUSTER", "INFO"))
        r.sock.close()
        io = {}
        if i < len(pids) and pids[i]:
            with open(f"/proc/{pids[i]}/io") as f:
                for line in f:
                    k, v = line.split(":")
                    io[k] = int(v)
        snap["servers"].append({
            "addr": addr,
            "cmds": cmds,
            "cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "total_commands_processed": int(info["total_commands_processed"]),
            "net_in": int(info["total_net_input_bytes"]),
            "net_out": int(info["total_net_output_bytes"]),
            "pubsub_channels": int(info.get("pubsub_channels", 0)),
            "numsub": int(numsub[1]),
            "subscriber_clients": sum(1 for l in clients.splitlines() if re.search(r"\bsub=[1-9]", l)),
            "clients": len(clients.splitlines()),
            "cluster_publish_sent": int(cluster.get("cluster_stats_messages_publish_sent", 0)),
            "cluster_publish_received": int(cluster.get("cluster_stats_messages_publish_received", 0)),
            "cluster_messages_sent": int(cluster.get("cluster_stats_messages_sent", 0)),
            "proc_wchar": io.get("wchar", 0),
            "proc_rchar": io.get("rchar", 0),
        })
    return snap


def redis_delta(a, b):
    """Per server and summed: what happened between snapshots a and b."""
    out = {"seconds": b["t"] - a["t"], "servers": [], "total": {}}
    total = {"cmds": {}}
    for sa, sb in zip(a["servers"], b["servers"]):
        d = {"addr": sb["addr"], "cmds": {}}
        for name, v in sb["cmds"].items():
            old = sa["cmds"].get(name, {"calls": 0, "usec": 0})
            calls = v["calls"] - old["calls"]
            if calls:
                d["cmds"][name] = {"calls": calls, "usec": v["usec"] - old["usec"]}
        for k in ("cpu", "total_commands_processed", "net_in", "net_out", "cluster_publish_sent",
                  "cluster_publish_received", "cluster_messages_sent", "proc_wchar", "proc_rchar"):
            d[k] = sb[k] - sa[k]
        for k in ("numsub", "subscriber_clients", "clients", "pubsub_channels"):
            d[k] = sb[k]
        out["servers"].append(d)
        for k, v in d.items():
            if k == "cmds":
                for name, c in v.items():
                    t = total["cmds"].setdefault(name, {"calls": 0, "usec": 0})
                    t["calls"] += c["calls"]
                    t["usec"] += c["usec"]
            elif k != "addr":
                total[k] = total.get(k, 0) + v
    out["total"] = total
    return out


# ------------------------------------------------------------------ HTTP


def http_once(port, method, path, headers=None, body=b""):
    """One request on a fresh connection: (status, headers dict, body)."""
    s = socket.create_connection((HOST, port), timeout=30)
    h = {"Host": f"{HOST}:{port}", "Connection": "close", "Content-Length": str(len(body))}
    h.update(headers or {})
    req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    s.sendall(req.encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return status, hdrs, rest


# Cookies other than the session's that logins set (the device cookie): sent
# back on the next login as a browser would, so the many logins of one user
# from one address count as that user's own browser (exempt from
# auth.max_attempts_per_user_total) instead of a stranger's attempts.
JAR = {}


def login(port):
    body = json.dumps({"username": USER, "password": PASSWORD}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if JAR:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in JAR.items())
    status, hdrs, rest = http_once(port, "POST", "/_guise/login", headers, body)
    if status != 200:
        raise SystemExit(f"login on :{port} answered {status}: {rest[:300]!r}")
    token = None
    for c in hdrs.get("set-cookie", []):
        name, _, value = c.split(";", 1)[0].partition("=")
        if name == COOKIE and value:
            token = value
        elif value:
            JAR[name] = value
    if token is None:
        raise SystemExit(f"login on :{port} set no {COOKIE} cookie")
    try:
        csrf = json.loads(rest)["csrf_token"]
    except (ValueError, KeyError):
        raise SystemExit(f"login on :{port}: no csrf_token in {rest[:300]!r}")
    return {"cookie": f"{COOKIE}={token}", "csrf": csrf}


class Conn:
    """A keep-alive connection that has at most one request in flight."""

    def __init__(self, port, tag):
        self.port = port
        self.tag = tag
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.sent_at = None

    def send(self, data):
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)
        self.sent_at = time.perf_counter()

    def feed(self):
        """Read what is there; return the status of a complete answer or None."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return None
        if not chunk:
            raise ConnectionError(f"node :{self.port} closed a keep-alive connection")
        self.buf += chunk
        return self.complete()

    def complete(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = self.buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        length, chunked = 0, False
        for line in lines[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                length = int(v)
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        body_start = end + 4
        if chunked:
            term = self.buf.find(b"\r\n0\r\n\r\n", body_start - 2)
            if term < 0:
                return None
            self.buf = self.buf[term + 7:]
        else:
            if len(self.buf) < body_start + length:
                return None
            self.buf = self.buf[body_start + length:]
        return status


def get_session_req(port, cookie):
    return (f"GET /_guise/session HTTP/1.1\r\nHost: {HOST}:{port}\r\nCookie: {cookie}\r\n"
            f"Accept: application/json\r\n\r\n").encode()


def logout_req(port, sess):
    return (f"POST /_guise/logout HTTP/1.1\r\nHost: {HOST}:{port}\r\nCookie: {sess['cookie']}\r\n"
            f"X-CSRF-Token: {sess['csrf']}\r\nAccept: application/json\r\nContent-Length: 0\r\n\r\n").encode()


def blocking_status(conn, req):
    conn.send(req)
    deadline = time.perf_counter() + 10
    while True:
        st = conn.complete() if conn.buf else None
        if st is None:
            sel = selectors.DefaultSelector()
            sel.register(conn.sock, selectors.EVENT_READ)
            if not sel.select(max(0.0, deadline - time.perf_counter())):
                raise TimeoutError(f"node :{conn.port} did not answer within 10 s")
            sel.close()
            st = conn.feed()
        if st is not None:
            return st


def make_sessions(ports, n):
    t0 = time.perf_counter()
    sessions = [login(ports[i % len(ports)]) for i in range(n)]
    log(f"{n} logins in {time.perf_counter() - t0:.1f} s")
    return sessions


def warm(conns, sessions):
    """Every node caches every session (and each still answers 200)."""
    for s in sessions:
        for c in conns:
            st = blocking_status(c, get_session_req(c.port, s["cookie"]))
            if st != 200:
                raise SystemExit(f"node :{c.port} answers {st} for a fresh session (want 200)")


class Subscriber:
    """SUBSCRIBE guise:events on one Redis; counts messages and bytes."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$12\r\nguise:events\r\n")
        self.sock.setblocking(False)
        self.buf = b""
        self.messages = 0
        self.bytes = 0
        self.sizes = []
        self.confirmed = False
        self.payload = None

    def feed(self):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        self.buf += chunk
        # Every frame is *3 $kind $channel $payload|:count.
        while True:
            m = re.match(rb"\*3\r\n\$(\d+)\r\n", self.buf)
            if not m:
                return
            pos = m.end()
            klen = int(m.group(1))
            if len(self.buf) < pos + klen + 2:
                return
            kind = self.buf[pos:pos + klen]
            pos += klen + 2
            m2 = re.compile(rb"\$(\d+)\r\n").match(self.buf, pos)
            if not m2:
                return
            clen = int(m2.group(1))
            pos = m2.end() + clen + 2
            if len(self.buf) < pos:
                return
            if kind == b"subscribe":
                m3 = re.compile(rb":(\d+)\r\n").match(self.buf, pos)
                if not m3:
                    return
                pos = m3.end()
                self.confirmed = True
            else:
                m3 = re.compile(rb"\$(\d+)\r\n").match(self.buf, pos)
                if not m3:
                    return
                plen = int(m3.group(1))
                end = m3.end() + plen + 2
                if len(self.buf) < end:
                    return
                self.payload = self.buf[m3.end():m3.end() + plen].decode()
                self.messages += 1
                self.bytes += end
                self.sizes.append(end)
                pos = end
            self.buf = self.buf[pos:]


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def cmd_revoke(a):
    ports = [int(p) for p in a.nodes.split(",")]
    addrs = a.redis.split(",")
    pids = [int(p) for p in a.redis_pids.split(",")] if a.redis_pids else []
    n = len(ports)
    sessions = make_sessions(ports, a.count)
    polls = [Conn(p, f"poll:{p}") for p in ports]
    revokers = [Conn(p, f"revoke:{p}") for p in ports]
    t0 = time.perf_counter()
    warm(polls, sessions)
    log(f"every node caches all {a.count} sessions ({a.count * n} lookups in {time.perf_counter() - t0:.1f} s)")

    sub = Subscriber(addrs[0])
    deadline = time.perf_counter() + 5
    while not sub.confirmed:
        if time.perf_counter() > deadline:
            raise SystemExit("own SUBSCRIBE on guise:events was not confirmed")
        time.sleep(0.001)
        sub.feed()

    # Redis's own background CPU (cron, cluster bus pings) over an idle
    # window, subtracted from the revocations' CPU below.
    idle_a = redis_snapshot(addrs, pids)
    time.sleep(a.idle_seconds)
    idle_b = redis_snapshot(addrs, pids)
    idle = redis_delta(idle_a, idle_b)

    sel = selectors.DefaultSelector()
    for c in polls + revokers:
        sel.register(c.sock, selectors.EVENT_READ, c)
    sel.register(sub.sock, selectors.EVENT_READ, sub)

    rows = []  # (revocation, node index, origin?, ms from sent, ms after returned)
    rtts = []  # ms of the polls answered 200 while a revocation was under way
    timeouts = 0
    before = redis_snapshot(addrs, pids)
    for i, s in enumerate(sessions):
        origin = i % n
        req = {c.port: get_session_req(c.port, s["cookie"]) for c in polls}
        # Every node serves the session right before the revocation.
        for c in polls:
            c.send(req[c.port])
        ok = set()
        while len(ok) < n:
            for key, _ in sel.select(5):
                c = key.data
                if c is sub:
                    sub.feed()
                    continue
                st = c.feed()
                if st is None:
                    continue
                if st != 200:
                    raise SystemExit(f"revocation {i}: node :{c.port} refused the session before it was revoked ({st})")
                ok.add(c.port)
        # All nodes polling; now revoke on the origin node.
        for c in polls:
            c.send(req[c.port])
        rv = revokers[origin]
        rv.send(logout_req(rv.port, s))
        t_sent = rv.sent_at
        t_ret = None
        refused = {}
        limit = t_sent + a.timeout
        while (len(refused) < n or t_ret is None) and time.perf_counter() < limit:
            for key, _ in sel.select(max(0.0, limit - time.perf_counter())):
                c = key.data
                if c is sub:
                    sub.feed()
                    continue
                st = c.feed()
                if st is None:
                    continue
                now = time.perf_counter()
                if c is rv:
                    if st != 200:
                        raise SystemExit(f"revocation {i}: logout on :{rv.port} answered {st}")
                    t_ret = now
                elif st == 200:
                    rtts.append((now - c.sent_at) * 1e3)
                    if c.port not in refused:
                        c.send(req[c.port])
                else:
                    refused.setdefault(c.port, now)
        if t_ret is None:
            raise SystemExit(f"revocation {i}: logout did not answer within {a.timeout} s")
        for j, c in enumerate(polls):
            if c.port in refused:
                t = refused[c.port]
                rows.append((i, j, j == origin, (t - t_sent) * 1e3, (t - t_ret) * 1e3))
            else:
                timeouts += 1
                rows.append((i, j, j == origin, a.timeout * 1e3, a.timeout * 1e3))
        # Drain: answers still in flight on nodes that were not refused yet.
        while any(c.port not in refused for c in polls):
            for key, _ in sel.select(a.timeout):
                c = key.data
                if c is sub:
                    sub.feed()
                    continue
                if c.feed() is not None:
                    refused.setdefault(c.port, time.perf_counter())
    # Let the last messages reach the own subscriber.
    deadline = time.perf_counter() + 2
    while sub.messages < a.count and time.perf_counter() < deadline:
        for key, _ in sel.select(0.05):
            if key.data is sub:
                sub.feed()
    after = redis_snapshot(addrs, pids)
    d = redis_delta(before, after)

    def summary(vals):
        return {"n": len(vals), "p50": pct(vals, 50), "p90": pct(vals, 90), "p99": pct(vals, 99),
                "max": max(vals), "min": min(vals)}

    res = {
        "nodes": n,
        "revocations": a.count,
        "timeouts": timeouts,
        "timeout_s": a.timeout,
        "all_from_sent": summary([r[3] for r in rows]),
        "all_after_returned": summary([r[4] for r in rows]),
        "others_from_sent": summary([r[3] for r in rows if not r[2]]),
        "origin_from_sent": summary([r[3] for r in rows if r[2]]),
        "poll_rtt": summary(rtts),
        "per_node_p99_from_sent": [pct([r[3] for r in rows if r[1] == j], 99) for j in range(n)],
        "rows": rows,
        "redis": d,
        "idle": idle,
        "subscriber": {"messages": sub.messages, "bytes": sub.bytes, "payload": sub.payload,
                       "sizes": sorted(set(sub.sizes))},
    }
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"{a.count} revocations x {n} nodes done; results in {a.out}")


# ------------------------------------------------------------------ load

WRK_LUA = """-- generated by bench/scale_probe.py: the sessions' cookies in turn
local cookies = {%s}
local i = %d
request = function()
  i = i + 1
  return wrk.format(nil, nil, {["Cookie"] = cookies[(i %% #cookies) + 1]})
end
"""


def run_wrks(ports, scripts, path, seconds, conns, core):
    procs = []
    for p, script in zip(ports, scripts):
        cmd = ["taskset", "-c", core, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", script,
               f"http://{HOST}:{p}{path}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outs = [pr.communicate()[0] for pr in procs]
    res = []
    for p, out in zip(ports, outs):
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if not m or not total:
            raise SystemExit(f"could not parse wrk output for :{p}:\n{out}")
        res.append({"port": p, "rps": float(m.group(1)), "requests": int(total.group(1)),
                    "non2xx": int(non2xx.group(1)) if non2xx else 0, "raw": out})
    return res


def cmd_load(a):
    ports = [int(p) for p in a.nodes.split(",")]
    addrs = a.redis.split(",")
    pids = [int(p) for p in a.redis_pids.split(",")] if a.redis_pids else []
    sessions = make_sessions(ports, a.sessions)
    polls = [Conn(p, f"warm:{p}") for p in ports]
    warm(polls, sessions)
    for c in polls:
        c.sock.close()
    with tempfile.TemporaryDirectory(prefix="guise-scale-wrk.") as tmp:
        load_with(a, ports, addrs, pids, sessions, tmp)


def load_with(a, ports, addrs, pids, sessions, tmp):
    cookies = ", ".join(json.dumps(s["cookie"]) for s in sessions)
    scripts = []
    for j, _ in enumerate(ports):
        path = os.path.join(tmp, f"node{j}.lua")
        with open(path, "w") as f:
            f.write(WRK_LUA % (cookies, j * 7))
        scripts.append(path)
    if a.warmup > 0:
        log(f"warm-up: {a.warmup} s of wrk on every node")
        run_wrks(ports, scripts, a.path, a.warmup, a.connections, a.wrk_core)
    before = redis_snapshot(addrs, pids)
    log(f"measuring: {a.duration} s of wrk -t1 -c{a.connections} on each of {len(ports)} nodes")
    wrk = run_wrks(ports, scripts, a.path, a.duration, a.connections, a.wrk_core)
    after = redis_snapshot(addrs, pids)
    d = redis_delta(before, after)
    res = {"nodes": len(ports), "sessions": a.sessions, "duration": a.duration,
           "connections_per_node": a.connections, "path": a.path, "wrk": wrk, "redis": d,
           "requests": sum(w["requests"] for w in wrk), "rps": sum(w["rps"] for w in wrk),
           "non2xx": sum(w["non2xx"] for w in wrk)}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"load done: {res['rps']:.0f} req/s over {len(ports)} nodes; results in {a.out}")


# ------------------------------------------------------------------ report

SCRIPT_INNER = {"get", "set", "zadd", "zremrangebyscore"}


def fmt_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def report_revoke(mode, rv):
    out = []
    n, count = rv["nodes"], rv["revocations"]
    out.append(f"--- {mode}: revocation seen on every node ({count} revocations x {n} nodes = {count * n} pairs)")
    rows = []
    for label, key in (("all pairs, from logout sent", "all_from_sent"),
                       ("all pairs, after logout returned", "all_after_returned"),
                       ("other nodes (pub/sub), from sent", "others_from_sent"),
                       ("revoking node, from sent", "origin_from_sent")):
        s = rv[key]
        rows.append([label, s["n"], f"{s['p50']:.2f}", f"{s['p90']:.2f}", f"{s['p99']:.2f}", f"{s['max']:.2f}"])
    out.append(fmt_table(rows, ["ms", "pairs", "p50", "p90", "p99", "max"]))
    p99 = rv["all_from_sent"]["p99"]
    out.append(f"not refused within {rv['timeout_s']} s: {rv['timeouts']} pairs")
    out.append(f"target p99 < 10 ms (all pairs, from sent): {p99:.2f} ms -> {'met' if p99 < 10 and not rv['timeouts'] else 'NOT met'}")
    out.append("per-node p99 from sent (ms): " + " ".join(f"{v:.1f}" for v in rv["per_node_p99_from_sent"]))
    r = rv["poll_rtt"]
    out.append(f"(each figure includes one poll round trip: the refusal is timed when it arrives; a poll answered "
               f"200 meanwhile took p50 {r['p50']:.2f} / p99 {r['p99']:.2f} ms, {r['n']} polls)")
    out.append("")

    d, idle = rv["redis"], rv["idle"]
    t = d["total"]
    out.append(f"--- {mode}: what one revocation costs Redis (over the {count} revocations, {d['seconds']:.1f} s)")
    rows = []
    for name, c in sorted(t["cmds"].items(), key=lambda kv: -kv[1]["calls"]):
        probe = name in PROBE_COMMANDS
        rows.append([name + (" (probe)" if probe else ""), c["calls"], f"{c['calls'] / count:.2f}",
                     f"{c['usec'] / count:.1f}"])
    out.append(fmt_table(rows, ["command", "calls", "per revocation", "usec per revocation"]))
    sub = rv["subscriber"]
    numsub = sum(s["numsub"] for s in d["servers"])
    out.append(f"subscribers on guise:events (PUBSUB NUMSUB, summed over servers): {numsub} "
               f"= {numsub - 1} nodes + the probe's own; per server: "
               + ", ".join(f"{s['addr']} {s['numsub']}" for s in d["servers"]))
    out.append(f"clients in subscribed state (CLIENT LIST sub>0): {sum(s['subscriber_clients'] for s in d['servers'])}; "
               f"all clients: {sum(s['clients'] for s in d['servers'])}")
    pub = t["cmds"].get("publish", {"calls": 0})["calls"]
    msg = sub["sizes"][0] if sub["sizes"] else 0
    out.append(f"PUBLISH per revocation: {pub / count:.2f}; messages the probe's subscriber received: "
               f"{sub['messages']} ({sub['messages'] / count:.2f} per revocation)")
    out.append(f"one message on the wire to a subscriber: {msg} bytes (payload {len(sub['payload'] or '')} bytes: "
               f"{sub['payload']})")
    out.append(f"  -> pub/sub fan-out per revocation: {numsub - 1} messages, {(numsub - 1) * msg} bytes to the nodes")
    out.append(f"Redis output per revocation (INFO total_net_output_bytes, probe's subscription included): "
               f"{t['net_out'] / count:.0f} bytes; input {t['net_in'] / count:.0f} bytes")
    out.append(f"redis-server write()s per revocation (/proc/PID/io wchar, client replies + cluster bus): "
               f"{t['proc_wchar'] / count:.0f} bytes")
    if t.get("cluster_publish_sent"):
        out.append(f"cluster bus: publish messages sent {t['cluster_publish_sent'] / count:.2f}, received "
                   f"{t['cluster_publish_received'] / count:.2f} per revocation (all masters); "
                   f"all bus messages sent {t['cluster_messages_sent'] / count:.2f} per revocation")
        for s in d["servers"]:
            out.append(f"  {s['addr']}: wchar {s['proc_wchar'] / count:.0f} B, cpu {s['cpu'] * 1e6 / count:.0f} us, "
                       f"bus publish sent {s['cluster_publish_sent'] / count:.2f} per revocation")
    idle_rate = idle["total"]["cpu"] / idle["seconds"]
    cpu = t["cpu"]
    net_cpu = cpu - idle_rate * d["seconds"]
    out.append(f"Redis CPU (used_cpu_sys+user, all servers): {cpu * 1e6 / count:.0f} us per revocation raw; "
               f"background {idle_rate * 1e3:.2f} ms/s from an idle {idle['seconds']:.0f} s window; "
               f"{net_cpu * 1e6 / count:.0f} us per revocation without it")
    out.append("")
    return out


def report_load(mode, ld, refresh, ttl, scale):
    out = []
    d = ld["redis"]
    secs = d["seconds"]
    t = d["total"]
    n, s = ld["nodes"], ld["sessions"]
    pairs = n * s
    out.append(f"--- {mode}: steady logged-in load ({n} nodes x wrk -t1 -c{ld['connections_per_node']}, "
               f"{s} sessions sent in turn to every node, {ld['duration']} s; refresh_interval {refresh} s, "
               f"cache_ttl {ttl} s)")
    out.append(f"requests: {ld['requests']} ({ld['rps']:.0f} req/s over all nodes), non-2xx: {ld['non2xx']}; "
               "per node req/s: " + " ".join(f"{w['rps']:.0f}" for w in ld["wrk"]))
    per_req = ld["requests"] or 1
    rows = []
    for name, c in sorted(t["cmds"].items(), key=lambda kv: -kv[1]["calls"]):
        probe = name in PROBE_COMMANDS
        timed = name in SCRIPT_INNER | {"evalsha"}
        label = name + (" (probe)" if probe else "") + (" (readiness prober)" if name == "ping" else "")
        rows.append([label, c["calls"], f"{c['calls'] / secs:.1f}",
                     f"{c['calls'] / per_req:.5f}",
                     f"{c['calls'] / secs / scale:.2f}" if timed else "-"])
    out.append(fmt_table(rows, ["command", "calls", "per s", "per request", "per s at default intervals"]))
    cmds = t["cmds"]
    calls = lambda k: cmds.get(k, {"calls": 0})["calls"]
    # Every session command on the request path is an EVALSHA: the re-read
    # script (one GET inside; it also SETs the record when the slide is
    # due) and, only after such a write, the active-set script (ZADD and
    # ZREMRANGEBYSCORE inside). No logins happen in the window.
    writes = calls("set")
    rereads = calls("get")
    active = calls("zadd")
    exp_write_node = pairs * secs / refresh
    exp_write_session = s * secs / refresh
    exp_reread = pairs * secs / ttl
    out.append(f"sliding-expiry writes (SET inside the re-read script): {writes} = {writes / secs:.1f}/s; "
               f"if once per session per refresh_interval: {exp_write_session:.0f}, "
               f"if once per (session, node): {exp_write_node:.0f}; active-set updates (ZADD): {active}")
    out.append(f"re-reads (EVALSHA of the re-read script, GET inside): {rereads} = {rereads / secs:.1f}/s; "
               f"at most once per (session, node) per cache_ttl: {exp_reread:.0f}; "
               f"round trips (EVALSHA): {calls('evalsha')} = re-reads + active-set updates "
               f"{'yes' if calls('evalsha') == rereads + active else 'NO'}")
    touches = writes
    other = {k: v["calls"] for k, v in cmds.items()
             if k not in SCRIPT_INNER | {"evalsha"} and k not in PROBE_COMMANDS}
    out.append("commands other than those and the probe's own: "
               + (", ".join(f"{k} {v}" for k, v in sorted(other.items())) if other else "none"))
    out.append(f"all commands but the probe's: {sum(v['calls'] for k, v in cmds.items() if k not in PROBE_COMMANDS) / secs:.1f}/s "
               f"= {sum(v['calls'] for k, v in cmds.items() if k not in PROBE_COMMANDS) / per_req:.5f} per request; "
               f"Redis CPU {t['cpu'] / secs * 1e3:.1f} ms/s")
    timed = sum(v["calls"] for k, v in cmds.items() if k in SCRIPT_INNER | {"evalsha"})
    per_session = timed / secs / s / scale
    out.append(f"session commands (EVALSHA, GET, and the scripts' inner SET/ZADD/ZREMRANGEBYSCORE) at the "
               f"default intervals (rates / {scale:g}): {per_session:.3f} per second per session, every session on "
               f"all {n} nodes -> {per_session * 1e6:,.0f} commands/s for a million sessions "
               f"({touches / secs / s / scale * 1e6:,.0f} slide writes/s + {rereads / secs / s / scale * 1e6:,.0f} re-reads/s; "
               f"{calls('evalsha') / secs / s / scale * 1e6:,.0f} round trips/s)")
    out.append(f"per node, not per session: PING from the readiness prober (operations.probe_interval_ms) "
               f"{calls('ping') / secs / n:.2f}/s per node")
    if len(d["servers"]) > 1:
        for srv in d["servers"]:
            c = sum(v["calls"] for k, v in srv["cmds"].items() if k not in PROBE_COMMANDS)
            out.append(f"  {srv['addr']}: {c / secs:.1f} commands/s, cpu {srv['cpu'] / secs * 1e3:.1f} ms/s")
    out.append("")
    return out


def cmd_report(a):
    out, raw = [], {}
    for spec in a.modes:
        mode, files = spec.split("=", 1)
        rv_file, ld_file = files.split(",")
        with open(rv_file) as f:
            rv = json.load(f)
        with open(ld_file) as f:
            ld = json.load(f)
        raw[mode] = {"revoke": rv, "load": ld}
        out += report_revoke(mode, rv)
        out += report_load(mode, ld, a.refresh, a.ttl, a.time_scale)
    # Summary table.
    rows = []
    for mode, r in raw.items():
        rv, ld = r["revoke"], r["load"]
        secs = ld["redis"]["seconds"]
        own = sum(v["calls"] for k, v in ld["redis"]["total"]["cmds"].items() if k not in PROBE_COMMANDS)
        rows.append([mode, f"{rv['all_from_sent']['p50']:.2f}", f"{rv['all_from_sent']['p99']:.2f}",
                     f"{rv['all_from_sent']['max']:.2f}", rv["timeouts"], f"{ld['rps']:.0f}",
                     f"{own / secs:.0f}", f"{own / max(ld['requests'], 1):.4f}"])
    out.insert(0, fmt_table(rows, ["redis", "revoke p50 ms", "p99 ms", "max ms", "lost", "load req/s",
                                   "redis cmds/s", "cmds/request"]))
    out.insert(1, "")
    print("\n".join(out))
    with open(a.raw, "w") as f:
        json.dump(raw, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    for name in ("revoke", "load"):
        p = sp.add_parser(name)
        p.add_argument("--nodes", required=True, help="comma-separated listener ports")
        p.add_argument("--redis", required=True, help="comma-separated host:port of every master")
        p.add_argument("--redis-pids", default="", help="their pids, same order (for /proc/PID/io)")
        p.add_argument("--out", required=True)
    r = sp.choices["revoke"]
    r.add_argument("--count", type=int, default=200)
    r.add_argument("--timeout", type=float, default=2.0, help="seconds a node may take to refuse")
    r.add_argument("--idle-seconds", type=float, default=3.0)
    ld = sp.choices["load"]
    ld.add_argument("--sessions", type=int, default=50)
    ld.add_argument("--duration", type=int, default=30)
    ld.add_argument("--warmup", type=int, default=3)
    ld.add_argument("--connections", type=int, default=4, help="per node")
    ld.add_argument("--path", default="/api/companies/co-101")
    ld.add_argument("--wrk-core", default="1")
    rp = sp.add_parser("report")
    rp.add_argument("--time-scale", type=float, required=True)
    rp.add_argument("--refresh", type=float, required=True)
    rp.add_argument("--ttl", type=float, required=True)
    rp.add_argument("--raw", required=True, help="write every raw figure here (JSON)")
    rp.add_argument("modes", nargs="+", help="MODE=REVOKE.json,LOAD.json")
    a = ap.parse_args()
    {"revoke": cmd_revoke, "load": cmd_load, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
