"""The proxy-bound part of scripts/bench (`scripts/bench core`, issue 19; issue 18 item 5).

P1 is the case a competitor would measure: the backend answers a small body
from memory (nginx `return 200`, kept-alive connections good for 100,000
requests), so the proxy is the bottleneck. P2 is the same request against
the static-file backend of case 1: the backend's own work bounds every path.
P3 is the WebSocket echo of case 3b (64 connections, small messages) against
the one-thread echo server, for the issue's "WebSocket echo CPU per round
trip <= nginx's" target. Paths: nginx, HAProxy and hpgate with one worker each, and hpgate with the
admin listener on (the cost of its metrics), interleaved run by run.
"""
import os
import statistics
import tempfile
import time

from bench_cases import RUNS, http_backend, measured, set_cpu, wrk, wsbench_path, ws_echo, ws_row
from bench_stack import Stack
from bench_tls import wrk_row

KEEP = ("nginx", "haproxy", "hpgate", "hpgate admin on", "hpgate admin off", "hpgate (before)")


def memory_backend(workdir):
    """Shell command for an nginx backend (one worker) answering "ok\\n" from memory."""
    tmpl = os.path.join(workdir, "memory.conf.in")
    open(tmpl, "w").write(f"""worker_processes 1; pid {workdir}/memory-PORT.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000;
  server {{ listen 127.0.0.1:PORT; location / {{ return 200 "ok\\n"; }} }} }}
""")
    return (f'sed "s/PORT/$HTTP_PLATFORM_PORT/g" {tmpl} > {workdir}/memory-$HTTP_PLATFORM_PORT.conf\n'
            f"exec nginx -c {workdir}/memory-$HTTP_PLATFORM_PORT.conf -g 'daemon off;'")


def med(rows, case, path, key):
    for r in rows:
        if r["case"] == case and r["path"] == path:
            values = [v for v in r[key] if v is not None]
            return statistics.median(values) if values else None
    return None


def user(r):
    """The user-space part of CPU per request, per run."""
    r["user"] = [c - s if c is not None and s is not None else None for c, s in zip(r["cpu"], r["sys"])]
    return r


def summary(rows, case, unit="req/s"):
    """hpgate against nginx (the issue's targets) and admin on against off (issue 18)."""
    out = {}
    get = lambda path, key: med(rows, case, path, key)
    tag = case.split(".")[0]
    if unit == "req/s" and get("nginx", "value") and get("hpgate", "value"):
        out[f"{tag} hpgate req/s / nginx (target >= 1.2)"] = f"{get('hpgate', 'value') / get('nginx', 'value'):.2f}"
    if unit == "req/s" and get("nginx", "cpu") and get("hpgate", "cpu"):
        out[f"{tag} hpgate CPU per request / nginx (target <= 0.85)"] = f"{get('hpgate', 'cpu') / get('nginx', 'cpu'):.2f}"
    if unit == "req/s" and get("nginx", "user") and get("hpgate", "user"):
        out[f"{tag} hpgate user CPU per request / nginx (target <= 1.0)"] = f"{get('hpgate', 'user') / get('nginx', 'user'):.2f}"
    if unit == "round trips/s" and get("nginx", "cpu") and get("hpgate", "cpu"):
        out[f"{tag} hpgate CPU per round trip / nginx (target <= 1.0)"] = f"{get('hpgate', 'cpu') / get('nginx', 'cpu'):.2f}"
    if unit == "round trips/s" and get("nginx", "user") and get("hpgate", "user"):
        out[f"{tag} hpgate user CPU per round trip / nginx"] = f"{get('hpgate', 'user') / get('nginx', 'user'):.2f}"
    if unit == "req/s" and get("hpgate", "p99") and get("haproxy", "p99"):
        out[f"{tag} hpgate p99 / HAProxy (target <= 1.0)"] = f"{get('hpgate', 'p99') / get('haproxy', 'p99'):.2f}"
    if get("hpgate admin off", "cpu") and get("hpgate admin on", "cpu"):
        diff = get("hpgate admin on", "cpu") / get("hpgate admin off", "cpu") - 1
        out[f"{tag} CPU per request, admin listener on vs off (issue 18: within noise, <= 3%)"] = f"{diff * 100:+.1f}%"
    if get("hpgate admin off", "cpu") and get("hpgate", "cpu"):
        diff = get("hpgate admin off", "cpu") / get("hpgate", "cpu") - 1
        out[f"{tag} CPU per request, the same hpgate twice (noise floor between two processes)"] = f"{diff * 100:+.1f}%"
    return out


def rotated(paths, fn, ops_key):
    """Like bench_tls.interleaved, but each round starts one path later, so
    no path always runs right after the same neighbour (the admin on/off
    pair is compared within a few percent)."""
    names = list(paths)
    results = {name: [] for name in names}
    for i in range(RUNS):
        for name in names[i % len(names):] + names[:i % len(names)]:
            port, pids = paths[name]
            r, times = measured(pids, lambda: fn(port))
            set_cpu(r, times, r[ops_key], bool(pids))
            results[name].append(r)
    return results


def core_cases():
    work = tempfile.mkdtemp(prefix="hpgate-bench-core-")
    os.chmod(work, 0o755)
    file_cmd, _ = http_backend(work)
    rows, facts = [], {}
    for case, backend in [("P1. small GET, 64 conns, proxy-bound (nginx return 200)", memory_backend(work)),
                          ("P2. small GET, 64 conns, backend-bound (static file)", file_cmd)]:
        stack = Stack(backend, before=True)
        try:
            time.sleep(1)
            paths = {k: v for k, v in stack.paths().items() if k in KEEP}
            res = rotated(paths, lambda port: wrk(port, "/small", 64), "requests")
            case_rows = [user(wrk_row(case, name, rs)) for name, rs in res.items()]
            rows += case_rows
            facts.update(summary(case_rows, case))
        finally:
            stack.close()
    rows_ws, facts_ws = ws_echo_case()
    return rows + rows_ws, {**facts, **facts_ws}


def ws_echo_case():
    """P3: WebSocket echo, 64 connections, one worker each."""
    case = "P3. WS echo, 64 conns, small messages"
    tool = wsbench_path()
    stack = Stack(f'exec {tool} server --port "$HTTP_PLATFORM_PORT"', before=True)
    try:
        time.sleep(1)
        paths = {k: v for k, v in stack.paths().items() if k in KEEP}
        res = rotated(paths, lambda port: ws_echo(tool, port, 64), "round_trips")
        case_rows = [user(ws_row(case, name, rs)) for name, rs in res.items()]
        return case_rows, summary(case_rows, case, unit="round trips/s")
    finally:
        stack.close()
