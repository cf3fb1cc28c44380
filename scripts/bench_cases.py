"""The cases of scripts/bench. Each returns rows for the report.

A row is a dict: case, path, value (list, one per run), unit, p50/p99 (ms,
lists), cpu (proxy CPU microseconds per operation, list), bad (count of
non-2xx responses and socket errors), note.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request

from bench_stack import ROOT, Hpgate, Stack, cpu_times, rss_kib, wait_port

RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SECS = int(os.environ.get("BENCH_SECS", "5"))
IDLE_CONNS = int(os.environ.get("BENCH_IDLE_CONNS", "5000"))
WRK_THREADS = 1


def measured(pids, fn):
    """Runs fn(); returns its result and the (user, system) CPU seconds pids used meanwhile."""
    u0, s0 = cpu_times(pids)
    out = fn()
    u1, s1 = cpu_times(pids)
    return out, (u1 - u0, s1 - s0)


def set_cpu(r, times, ops, pids=True):
    """Proxy CPU per operation in microseconds: total, and the kernel's part."""
    ok = pids and ops
    r["cpu"] = sum(times) / ops * 1e6 if ok else None
    r["sys"] = times[1] / ops * 1e6 if ok else None


# ------------------------------------------------------------------ HTTP

def parse_wrk(text):
    def num(pattern):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else None

    def lat(label):
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)\b", text)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else None

    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    return {"rps": num(r"Requests/sec:\s+([\d.]+)"), "requests": num(r"(\d+) requests in") or 0,
            "p50": lat("50"), "p99": lat("99"), "bad": (num(r"Non-2xx or 3xx responses: (\d+)") or 0) + errors}


def wrk(port, path, conns, script=None, scheme="http"):
    cmd = ["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{SECS}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [f"{scheme}://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    return parse_wrk(out)


def http_backend(workdir):
    """Shell command for a static nginx backend (one worker) with the test files."""
    www = os.path.join(workdir, "www")
    os.makedirs(www)
    open(os.path.join(www, "small"), "w").write("ok\n")
    with open(os.path.join(www, "1m"), "wb") as f:
        f.write(os.urandom(1 << 20))
    tmpl = os.path.join(workdir, "backend.conf.in")
    open(tmpl, "w").write(f"""worker_processes 1; pid {workdir}/backend-PORT.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000; client_max_body_size 4m;
  server {{ listen 127.0.0.1:PORT; root {www};
    location / {{ }} }} }}
""")
    upload = os.path.join(workdir, "upload.lua")
    open(upload, "w").write('wrk.method = "POST"\nwrk.body = string.rep("x", 1048576)\n'
                            'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    cmd = (f'sed "s/PORT/$HTTP_PLATFORM_PORT/g" {tmpl} > {workdir}/backend-$HTTP_PLATFORM_PORT.conf\n'
           f"exec nginx -c {workdir}/backend-$HTTP_PLATFORM_PORT.conf -g 'daemon off;'")
    return cmd, upload


def http_cases():
    work = tempfile.mkdtemp(prefix="hpgate-bench-www-")
    os.chmod(work, 0o755)
    cmd, upload = http_backend(work)
    rows, rest = [], {}
    stack = Stack(cmd, before=True)
    try:
        time.sleep(1)
        rest["7. hpgate RSS at rest, fresh (KiB)"] = rss_kib(stack.hpgate.pids)
        rows += wrk_cases(stack, [("1. small GET, 64 conns", "/small", 64, None, "req/s"),
                                  ("2a. 1 MiB GET, 16 conns", "/1m", 16, None, "MiB/s")])
        time.sleep(1)
        rest["7. hpgate RSS at rest after the GET cases (KiB; mimalloc keeps freed pages cached)"] = rss_kib(stack.hpgate.pids)
    finally:
        stack.close()
    # Uploads go to a backend that reads every body to the end (benches/sink.rs).
    stack = Stack(f'exec {bench_tool("sink")} --port "$HTTP_PLATFORM_PORT"', before=True)
    try:
        rows += wrk_cases(stack, [("2b. 1 MiB upload, 16 conns", "/upload", 16, upload, "MiB/s")])
    finally:
        stack.close()
    return rows, rest


def wrk_cases(stack, cases, scheme="http"):
    rows = []
    paths = stack.paths()
    for case, path, conns, script, unit in cases:
        results = {name: [] for name in paths}
        for _ in range(RUNS):
            for name, (port, pids) in paths.items():  # interleaved
                r, times = measured(pids, lambda: wrk(port, path, conns, script, scheme))
                set_cpu(r, times, r["requests"], bool(pids))
                results[name].append(r)
        for name, rs in results.items():
            # 1 MiB per request: requests/s is MiB/s.
            rows.append({"case": case, "path": name, "unit": unit,
                         "value": [r["rps"] for r in rs if r["rps"] is not None],
                         "p50": [r["p50"] for r in rs], "p99": [r["p99"] for r in rs],
                         "cpu": [r["cpu"] for r in rs], "sys": [r["sys"] for r in rs],
                         "bad": sum(r["bad"] for r in rs)})
    return rows


# ------------------------------------------------------------------ WebSocket

def bench_tool(name):
    """Path of a compiled tool under benches/ (built in release mode).

    Built in a target directory of its own: a bench target is built with the
    dev-dependencies' features (tokio's `test-util` among them), and so is
    the hpgate binary cargo builds beside it. In target/ that build replaced
    target/release/hpgate, so every hpgate the benches started after it ran
    with those features (about 9% more instructions per WebSocket round trip;
    docs/benchmarks.md, issue 19 step 12).
    """
    out = subprocess.run(["cargo", "bench", "--bench", name, "--no-run", "--message-format=json",
                          "--target-dir", os.path.join(ROOT, "target", "bench-tools")],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = json.loads(line)
        if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
            return m["executable"]
    raise RuntimeError(f"cargo did not report the {name} executable")


def wsbench_path():
    return bench_tool("wsbench")


def ws_echo(tool, port, conns, mix="small", deflate=False, tls=None):
    """tls: a CA file; the echo then runs over wss://."""
    url = f"wss://127.0.0.1:{port}/" if tls else f"ws://127.0.0.1:{port}/"
    cmd = [tool, "echo", "--url", url, "--conns", str(conns), "--secs", str(SECS), "--mix", mix]
    if deflate:
        cmd.append("--deflate")
    if tls:
        cmd += ["--tls", tls]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"round_trips": 0, "per_sec": None, "p50_us": None, "p99_us": None, "error": p.stderr.strip()}
    return json.loads(p.stdout)


def ws_cases(tool):
    stack = Stack(f'exec {tool} server --port "$HTTP_PLATFORM_PORT"', offload=True, before=True)
    rows, extra = [], {}
    try:
        paths = stack.paths()
        for case, conns in [("3a. WS echo, 1 conn sequential", 1), ("3b. WS echo, 64 conns", 64)]:
            results = {name: [] for name in paths}
            for _ in range(RUNS):
                for name, (port, pids) in paths.items():
                    r, times = measured(pids, lambda: ws_echo(tool, port, conns))
                    set_cpu(r, times, r["round_trips"], bool(pids))
                    results[name].append(r)
            for name, rs in results.items():
                rows.append(ws_row(case, name, rs))

        # 4: a text-heavy mix, client offering permessage-deflate. The echo
        # backend does not compress, so passthrough sends it plain; offload
        # compresses between hpgate and the client.
        case = "4. WS text mix, 8 conns"
        variants = {"hpgate passthrough": (stack.hpgate.port, stack.hpgate.pids),
                    "hpgate offload": (stack.offload.port, stack.offload.pids)}
        results = {name: [] for name in variants}
        for _ in range(RUNS):
            for name, (port, pids) in variants.items():
                r, times = measured(pids, lambda: ws_echo(tool, port, 8, mix="text", deflate=True))
                set_cpu(r, times, r["round_trips"])
                results[name].append(r)
        wire = {}
        for name, rs in results.items():
            row = ws_row(case, name, rs)
            ok = [r for r in rs if r["round_trips"]]
            payload = sum(r["payload_bytes"] for r in ok)
            on_wire = sum(r["sent_wire"] + r["recv_wire"] for r in ok)
            wire[name] = on_wire / (2 * payload) if payload else None
            row["note"] = f"client wire bytes / payload bytes: {wire[name]:.2f}" if wire[name] else ""
            rows.append(row)
        if wire.get("hpgate passthrough") and wire.get("hpgate offload"):
            extra["4. client-side bytes saved by offload"] = f"{(1 - wire['hpgate offload'] / wire['hpgate passthrough']) * 100:.0f}%"

        extra.update(idle_case(tool, stack))
    finally:
        stack.close()
    return rows, extra


def ws_row(case, name, rs):
    ok = [r for r in rs if r.get("per_sec")]
    return {"case": case, "path": name, "unit": "round trips/s", "value": [r["per_sec"] for r in ok],
            "p50": [r["p50_us"] / 1000 for r in ok], "p99": [r["p99_us"] / 1000 for r in ok],
            "cpu": [r["cpu"] for r in ok], "sys": [r["sys"] for r in ok], "bad": len(rs) - len(ok),
            "note": "; ".join(sorted({r["error"] for r in rs if r.get("error")}))}


def idle_case(tool, stack):
    """5: RSS growth per idle proxied WebSocket, for each proxy."""
    out = {}
    for name, (port, pids) in stack.paths().items():
        if name == "direct":
            continue
        before = rss_kib(pids)
        holder = subprocess.Popen([tool, "idle", "--url", f"ws://127.0.0.1:{port}/", "--conns", str(IDLE_CONNS)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = holder.stdout.readline().strip()
            if line != f"ready {IDLE_CONNS}":
                out[f"5. {name}: idle WebSocket"] = f"failed ({line or 'no output'})"
                continue
            time.sleep(2)  # let allocator caches settle
            grown = rss_kib(pids) - before
            out[f"5. {name}: RSS per idle WebSocket ({IDLE_CONNS} conns, KiB)"] = f"{grown / IDLE_CONNS:.1f}"
        finally:
            holder.stdin.close()
            holder.wait(30)
        time.sleep(1)
    return out


# ------------------------------------------------------------------ lifecycle

def app_start_ms(python, app, trials=5):
    """The app's own start time: exec to listening, without hpgate."""
    times = []
    for _ in range(trials):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        t0 = time.time()
        p = subprocess.Popen([python, app, "--port", str(port)], stdout=subprocess.DEVNULL)
        try:
            wait_port(port, interval=0.001)
            times.append((time.time() - t0) * 1000)
        finally:
            p.terminate()
            p.wait()
    return sorted(times)[len(times) // 2]


def get(port, path, timeout=10):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status


def lifecycle_case(trials=5):
    """6: ready detection and crash-to-restored, with the stdlib test app."""
    python = os.path.join(ROOT, ".venv", "bin", "python")
    app = os.path.join(ROOT, "fixtures", "backends", "testapp.py")
    own = app_start_ms(python, app)
    ready, restore = [], []
    work = tempfile.mkdtemp(prefix="hpgate-bench-life-")
    for _ in range(trials):
        stamp = os.path.join(work, "stamps")
        if os.path.exists(stamp):
            os.remove(stamp)
        script = os.path.join(work, "app.sh")
        # A 0.5 s sleep before listening: the first request waits on readiness.
        open(script, "w").write(f"#!/bin/sh\nexec {python} {app} --mode sleep --delay 0.5\n")
        os.chmod(script, 0o755)
        gw = Hpgate(work, "life", script, env={"TESTAPP_STAMP": stamp})
        try:
            get(gw.port, "/")
            served = time.time()
            first = json.loads(open(stamp).readline())
            ready.append((served - first["listen"]) * 1000)
            # Crash: the app exits mid-request; then poll until served again.
            open(script, "w").write(f"#!/bin/sh\nexec {python} {app}\n")
            crashed = time.time()
            try:
                get(gw.port, "/crash", timeout=5)
            except Exception:
                pass
            while True:
                try:
                    if get(gw.port, "/", timeout=5) == 200:
                        break
                except Exception:
                    time.sleep(0.002)
            restore.append((time.time() - crashed) * 1000)
        finally:
            gw.proc.terminate()
            gw.proc.wait(10)
    med = lambda v: sorted(v)[len(v) // 2]
    return {
        "6. ready detection: app listening -> first request served (ms, median of 5)": f"{med(ready):.1f} (max {max(ready):.1f})",
        "6. crash -> service restored (ms, median of 5)": f"{med(restore):.0f} (max {max(restore):.0f})",
        "6. the app's own start time, exec -> listening without hpgate (ms)": f"{own:.0f}",
        "6. crash -> restored minus the app's own start (ms)": f"{med(restore) - own:.0f}",
    }
