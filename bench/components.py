#!/usr/bin/env python3
"""Where a request's instructions go, from a callgrind dump of
bench/instructions.sh --keep DIR:

    bench/components.py DIR/guise-login.callgrind [REQUESTS]

REQUESTS defaults to the number in DIR/<name>.requests. Prints two tables,
per request:

- self cost of leaf-level components: the own instructions of functions,
  grouped by the crate or library their source belongs to (memcpy,
  SHA-256, allocator, header maps, parsing, timers, ...). Only groups of
  functions that are not on the stack when the counters are dumped are
  shown: callgrind_annotate reports the frames that were active at the
  dump (the runtime, the connection task, async closures) with their
  inclusive cost as "self", so those entries (any `{{closure}}`, and any
  other single entry above 3% of the total) are left out and fall into
  "the rest";
- inclusive cost of the stages a proxied request goes through (pingora's
  phases and guise's hooks); these overlap (a stage includes the stages it
  calls) and are shown for orientation.

Self costs come from `callgrind_annotate --inclusive=no`, inclusive ones
from `--inclusive=yes`; a function inlined into another is counted where
callgrind saw it (under the caller's name, with the callee's file).
"""
import os
import re
import subprocess
import sys

# Matched against the function's name (after the source file), first match
# wins: inlined code is counted by the function callgrind saw it in.
GROUPS = [
    ("memcpy/memmove (libc)", r"memmove|memcpy|memset"),
    ("SHA-256 compression (sha2; portable code under valgrind)", r"sha2::"),
    ("HMAC / digest glue", r"digest::|hmac::"),
    ("allocator (mimalloc)", r"(^|[^a-z])_?mi_|mimalloc"),
    ("allocator (glibc)", r"^(malloc|free|_int_malloc|_int_free|realloc|cfree)"),
    ("header maps (http::header)", r"http::header::"),
    ("pingora-http (header wrappers, case maps)", r"pingora_http::"),
    ("http crate, other (uri, method, ...)", r"^<?http::"),
    ("request/response parsing (httparse)", r"httparse::"),
    ("pingora-timeout (timers)", r"pingora_timeout::"),
    ("pingora-pool (upstream connection pool)", r"pingora_pool::"),
    ("pingora-core / pingora-proxy (leaf functions)", r"pingora_core::|pingora_proxy::"),
    ("tokio (leaf functions: I/O readiness, wakers, sync)", r"tokio::"),
    ("bytes", r"bytes::"),
    ("moka (session cache)", r"moka::|crossbeam|quanta::"),
    ("prometheus (metrics)", r"prometheus::"),
    ("serde / serde_json", r"serde"),
    ("guise (leaf functions)", r"guise::"),
    ("formatting (core::fmt)", r"core::fmt|alloc::fmt|<.* as core::fmt::"),
    ("hashing (hashbrown, SipHash, ...)", r"hashbrown|hash::sip|fnv|ahash|foldhash"),
    ("libc syscall wrappers", r"^(__libc_|__GI_|epoll_|send|recv|read|write|writev|clock_gettime|__vdso)"),
]

STAGES = [
    ("whole connection task (pingora ServerApp::process_new)", r"^<T as pingora_core::apps::ServerApp>::process_new::\{\{closure\}\}$"),
    ("read + parse the client request (Session::read_request)", r"^pingora_core::protocols::http::server::Session::read_request::\{\{closure\}\}$"),
    ("proxy_to_upstream (upstream request, response, hooks)", r"^pingora_proxy::HttpProxy<SV,C>::proxy_to_upstream::\{\{closure\}\}$"),
    ("upstream pool: get_http_session", r"^pingora_core::connectors::http::Connector<C>::get_http_session::\{\{closure\}\}$"),
    ("upstream pool: release_http_session", r"^pingora_core::connectors::http::Connector<C>::release_http_session::\{\{closure\}\}$"),
    ("read + parse the upstream response header", r"^pingora_core::protocols::http::v1::client::HttpSession::read_resp_header_parts::\{\{closure\}\}$"),
    ("write the response (write_response_tasks)", r"^pingora_proxy::Session::write_response_tasks::\{\{closure\}\}$"),
    ("pingora sanitize_h1_upstream_request", r"^pingora_proxy::proxy_common::sanitize_h1_upstream_request$"),
    ("pingora HttpProxy::finish", r"^pingora_proxy::HttpProxy<SV,C>::finish::\{\{closure\}\}$"),
    ("guise request_filter (stages 1-7)", r"^<guise::proxy::GatewayProxy as pingora_proxy::proxy_trait::ProxyHttp>::request_filter::\{\{closure\}\}$"),
    ("  session lookup (token hash, cache)", r"^guise::session::SessionManager::resolve::\{\{closure\}\}$"),
    ("  cookie parsing (read_token)", r"^guise::session::cookie::read_token$"),
    ("  target check", r"^guise::target::check$"),
    ("guise upstream_request_filter", r"^<guise::proxy::GatewayProxy as pingora_proxy::proxy_trait::ProxyHttp>::upstream_request_filter::\{\{closure\}\}$"),
    ("  identity headers + HMAC signature (sign_onto)", r"^guise::subject::Subject::sign_onto$"),
    ("  X-Forwarded-* (forwarded::set_headers)", r"^guise::forwarded::set_headers$"),
    ("  gateway cookie strip", r"^guise::session::cookie::strip$"),
    ("guise upstream_response_filter", r"^<guise::proxy::GatewayProxy as pingora_proxy::proxy_trait::ProxyHttp>::upstream_response_filter::\{\{closure\}\}$"),
    ("guise response_filter", r"^<guise::proxy::GatewayProxy as pingora_proxy::proxy_trait::ProxyHttp>::response_filter(::\{\{closure\}\})?$"),
    ("guise logging (metrics, audit record)", r"^<guise::proxy::GatewayProxy as pingora_proxy::proxy_trait::ProxyHttp>::logging::\{\{closure\}\}$"),
    ("  audit record (impersonating)", r"^guise::audit::Audit::record(_request)?$"),
    ("audit writer task", r"^<guise::audit::AuditWriter as pingora_core::services::background::BackgroundService>::start::\{\{closure\}\}$"),
]


def annotate(dump, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", "--inclusive=" + ("yes" if inclusive else "no"), dump],
        capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
    total = None
    for line in out.splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
    return total, rows


def main():
    dump = sys.argv[1]
    if len(sys.argv) > 2:
        n = int(sys.argv[2])
    else:
        base = os.path.splitext(dump)[0]
        n = int(open(base + ".requests").read().split()[0])
    total, rows = annotate(dump, False)
    groups = {g: 0 for g, _ in GROUPS}
    other = 0
    for cost, name in rows:
        leaf = re.search(r"memmove|memcpy|sha2::", name)
        if not leaf and ("{{closure}}" in name or cost > 0.03 * total):
            continue
        fn = name.split(":", 1)[1] if ":" in name and not name.startswith("???") else name
        fn = re.sub(r" \[[^\]]*\]$", "", fn)
        for g, pat in GROUPS:
            if re.search(pat, fn):
                groups[g] += cost
                break
        else:
            pass
    print(f"{os.path.basename(dump)}: {n} requests, {total / n:,.0f} instructions per request\n")
    other = total - sum(groups.values())
    print("self cost by component (per request; leaf-level groups)")
    for g, _ in sorted(GROUPS, key=lambda x: -groups[x[0]]):
        if groups[g]:
            print(f"  {groups[g] / n:>9,.0f}  {100 * groups[g] / total:5.1f}%  {g}")
    print(f"  {other / n:>9,.0f}  {100 * other / total:5.1f}%  the rest (pingora-core/-proxy, tokio's scheduler, guise, kernel entry: not split here)")
    # A function's inclusive cost is the cost of the calls into it, summed
    # over its callers (from --tree=caller). The inclusive column of
    # callgrind_annotate is not used: it lists one entry per source file
    # inlined into a function, and counts frames active at the dump whole.
    calls = call_costs(dump)
    print("\ninclusive cost of stages (per request; they overlap)")
    for label, pat in STAGES:
        best = max((c for fn, c in calls.items() if re.search(pat, fn)), default=0)
        if best:
            print(f"  {best / n:>9,.0f}  {label}")


def fn_name(entry):
    fn = entry.split(":", 1)[1] if ":" in entry and not entry.startswith("???") else entry
    fn = re.sub(r" \[[^\]]*\]$", "", fn)
    return re.sub(r" \(\d[\d,]*x\)$", "", fn).strip()


def call_costs(dump):
    out = subprocess.run(
        ["callgrind_annotate", "--auto=no", "--threshold=100", "--inclusive=yes", "--tree=caller", dump],
        capture_output=True, text=True, check=True).stdout
    costs = {}
    pending = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+([<*])\s+(.*)$", line)
        if not m:
            pending = []
            continue
        cost, kind, entry = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
        if kind == "<":
            pending.append((cost, fn_name(entry)))
            continue
        target = fn_name(entry)
        total = sum(c for c, caller in pending if caller != target)
        costs[target] = costs.get(target, 0) + total
        pending = []
    return costs


if __name__ == "__main__":
    main()
