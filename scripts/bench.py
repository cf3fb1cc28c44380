"""Benchmark driver for scripts/bench: one backend, four paths, one table.

The backend is a static nginx (fast enough not to be the bottleneck) that
hpgate itself starts and supervises, so every path reaches the very same
process. wrk runs with one thread (-t1) so the load generator leaves CPU to
the proxies on this 2-core machine. Each case runs RUNS times per path,
interleaved; the table shows the median and the spread (min-max).
Proxy CPU per request = utime+stime of the proxy's processes (from /proc)
during the run, divided by the requests served: the steadiest figure when
load generator, proxy and backend share two cores.
"""
import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPGATE = os.path.join(ROOT, "target", "release", "hpgate")
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
DURATION = os.environ.get("BENCH_DURATION", "5s")
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(p))
    return out


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parse_wrk(text):
    def num(pattern, scale=1.0):
        m = re.search(pattern, text)
        return float(m.group(1)) * scale if m else None

    def lat(label):
        m = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", text)
        if not m:
            return None
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]

    total = num(r"(\d+) requests in")
    non2xx = num(r"Non-2xx or 3xx responses: (\d+)") or 0
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    return {"rps": num(r"Requests/sec:\s+([\d.]+)"), "requests": total, "p50": lat("50"), "p99": lat("99"),
            "bad": non2xx + errors, "mbps": num(r"Transfer/sec:\s+([\d.]+)MB") or (num(r"Transfer/sec:\s+([\d.]+)GB", 1024) or 0)}


class Stack:
    """Backend (under hpgate) plus nginx and HAProxy proxies in front of it."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hpgate-bench-")
        os.chmod(self.dir, 0o755)  # nginx workers run as an unprivileged user
        self.procs = []
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        open(os.path.join(www, "small"), "w").write("ok\n")
        with open(os.path.join(www, "1m"), "wb") as f:
            f.write(os.urandom(1 << 20))
        tmpl = os.path.join(self.dir, "backend.conf.in")
        open(tmpl, "w").write(f"""worker_processes 1; pid {self.dir}/backend-PORT.pid; error_log /dev/null;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:PORT; root {www}; location / {{ }} }} }}
""")
        run = os.path.join(self.dir, "backend.sh")
        open(run, "w").write(f"#!/bin/sh\nsed \"s/PORT/$HTTP_PLATFORM_PORT/g\" {tmpl} > {self.dir}/backend.conf\n"
                             f"exec nginx -c {self.dir}/backend.conf -g 'daemon off;'\n")
        os.chmod(run, 0o755)
        self.hpgate_port = free_port()
        log = open(os.path.join(self.dir, "hpgate.log"), "w")
        self.hpgate = subprocess.Popen([HPGATE, "run", "--listen", f"127.0.0.1:{self.hpgate_port}", "--", run],
                                       cwd=self.dir, stderr=log, env={**os.environ, "HPGATE_LOG": "warn,hpgate=info"})
        self.procs.append(self.hpgate)
        wait_port(self.hpgate_port)
        self.backend_port = self._backend_port()
        wait_port(self.backend_port)
        self.nginx_port, self.haproxy_port = free_port(), free_port()
        conf = os.path.join(self.dir, "proxy.conf")
        # As nginx's docs recommend for WebSocket and streaming.
        open(conf, "w").write(f"""worker_processes 1; pid {self.dir}/proxy.pid; error_log /dev/null;
events {{ worker_connections 8192; }}
http {{ access_log off;
  upstream app {{ server 127.0.0.1:{self.backend_port}; keepalive 64; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{ listen 127.0.0.1:{self.nginx_port};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_buffering off; proxy_request_buffering off;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; proxy_set_header Host $host; }} }} }}
""")
        self.nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
        self.procs.append(self.nginx)
        hconf = os.path.join(self.dir, "haproxy.cfg")
        open(hconf, "w").write(f"""global
  maxconn 8000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend f
  bind 127.0.0.1:{self.haproxy_port}
  default_backend b
backend b
  server app 127.0.0.1:{self.backend_port}
""")
        self.haproxy = subprocess.Popen(["haproxy", "-f", hconf, "-db"])
        self.procs.append(self.haproxy)
        wait_port(self.nginx_port)
        wait_port(self.haproxy_port)

    def _backend_port(self):
        end = time.time() + 10
        while time.time() < end:
            m = re.search(r"started app process.*port=(\d+)", open(os.path.join(self.dir, "hpgate.log")).read())
            if m:
                return int(m.group(1))
            time.sleep(0.05)
        raise RuntimeError("hpgate did not start the backend")

    def paths(self):
        return {
            "direct": (self.backend_port, []),
            "nginx": (self.nginx_port, [self.nginx.pid] + children(self.nginx.pid)),
            "haproxy": (self.haproxy_port, [self.haproxy.pid]),
            "hpgate": (self.hpgate_port, [self.hpgate.pid]),
        }

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk(port, path, conns):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{DURATION}", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    return parse_wrk(out)


def fmt_range(values, f="{:.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{f.format(statistics.median(values))} ({f.format(min(values))}-{f.format(max(values))})"


def main():
    stack = Stack()
    rows = []
    try:
        paths = stack.paths()
        for case, path, conns in [("small GET, 64 conns", "/small", 64), ("1 MiB GET, 16 conns", "/1m", 16)]:
            results = {name: [] for name in paths}
            for _ in range(RUNS):
                for name, (port, pids) in paths.items():  # interleaved
                    before = cpu_seconds(pids)
                    r = wrk(port, path, conns)
                    r["cpu_us"] = ((cpu_seconds(pids) - before) / r["requests"] * 1e6) if pids and r["requests"] else None
                    results[name].append(r)
            for name, rs in results.items():
                rows.append((case, name, fmt_range([r["rps"] for r in rs]), fmt_range([r["p50"] for r in rs], "{:.2f}"),
                             fmt_range([r["p99"] for r in rs], "{:.2f}"), fmt_range([r["cpu_us"] for r in rs], "{:.1f}"),
                             str(int(sum(r["bad"] for r in rs)))))
        rest = {"hpgate RSS at rest (KiB)": rss_kib(stack.hpgate.pid),
                "hpgate binary size (KiB)": os.path.getsize(HPGATE) // 1024}
    finally:
        stack.close()

    header = ("case", "path", "req/s median (range)", "p50 ms", "p99 ms", "proxy CPU us/req", "non-2xx+errors")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rest.items()]
    table = "\n".join(lines)
    print(table)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"
    doc = os.path.join(ROOT, "docs", "benchmarks.md")
    text = open(doc).read() if os.path.exists(doc) else ""
    marker = "<!-- results -->"
    head = text.split(marker)[0] if marker in text else text
    open(doc, "w").write(f"{head}{marker}\n\nRun {stamp} on {machine}; wrk -t1, {DURATION} per run, {RUNS} runs per path.\n\n{table}\n")


if __name__ == "__main__":
    sys.exit(main())
