"""The TLS cases of scripts/bench (`scripts/bench tls`), and the before/after
comparison (`BENCH_HPGATE_BEFORE=/path/to/old/hpgate scripts/bench compare`).

TLS: hpgate (rustls, ring), nginx (OpenSSL, `listen ... ssl http2`) and
HAProxy (OpenSSL, `ssl crt ... alpn h2,http/1.1`) terminate TLS with the
same ECDSA P-256 certificate in front of the same plain-HTTP backend.
"""
import json
import os
import re
import subprocess
import tempfile
import time

from bench_cases import RUNS, SECS, bench_tool, http_backend, measured, set_cpu, wrk, wrk_cases, ws_echo, ws_row
from bench_stack import HPGATE_BEFORE, Stack


class Certs:
    """A throwaway CA and an ECDSA P-256 leaf for 127.0.0.1, made with openssl."""

    def __init__(self):
        d = tempfile.mkdtemp(prefix="hpgate-bench-tls-")
        os.chmod(d, 0o755)
        self.ca, self.cert, self.key = f"{d}/ca.pem", f"{d}/cert.pem", f"{d}/key.pem"
        self.combined = f"{d}/combined.pem"  # HAProxy wants certificate and key in one file
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
        run("req", "-x509", *ec, "-keyout", f"{d}/ca.key", "-out", self.ca, "-days", "2",
            "-subj", "/CN=hpgate bench CA")
        run("req", *ec, "-keyout", self.key, "-out", f"{d}/leaf.csr", "-subj", "/CN=127.0.0.1")
        open(f"{d}/leaf.ext", "w").write("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n"
                                          "extendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", f"{d}/leaf.csr", "-CA", self.ca, "-CAkey", f"{d}/ca.key",
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", f"{d}/leaf.ext")
        for f in (self.key, f"{d}/ca.key"):
            os.chmod(f, 0o644)  # nginx workers and HAProxy read them as other users
        open(self.combined, "w").write(open(self.cert).read() + open(self.key).read())


def parse_h2load(text):
    """h2load prints no percentiles: only throughput and the request counts."""
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", text)
    req = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
    codes = re.search(r"status codes: (\d+) 2xx", text)
    ok = int(codes.group(1)) if codes else 0
    done = int(req.group(1)) if req else 0
    bad = (int(req.group(2)) + int(req.group(3)) if req else 1) + (done - ok)
    return {"rps": float(rps.group(1)) if rps else None, "requests": ok, "p50": None, "p99": None, "bad": bad}


def h2load(port, path, clients, streams):
    cmd = ["h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{SECS}", f"https://127.0.0.1:{port}{path}"]
    return parse_h2load(subprocess.run(cmd, capture_output=True, text=True).stdout)


def handshakes(tool, ca, port, conns):
    cmd = [tool, "handshake", "--url", f"https://127.0.0.1:{port}/small", "--tls", ca,
           "--conns", str(conns), "--secs", str(SECS)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"round_trips": 0, "per_sec": None, "p50_us": None, "p99_us": None, "error": p.stderr.strip()}
    return json.loads(p.stdout)


def interleaved(paths, fn, ops_key):
    """fn(port) for every path, RUNS rounds, interleaved; proxy CPU per op set on each result."""
    results = {name: [] for name in paths}
    for _ in range(RUNS):
        for name, (port, pids) in paths.items():
            r, times = measured(pids, lambda: fn(port))
            set_cpu(r, times, r[ops_key], bool(pids))
            results[name].append(r)
    return results


def negotiated(port, ca):
    """The protocol version and cipher a fresh connection gets (openssl s_client), for the notes."""
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca],
                         input="", capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"New, (\S+), Cipher is (\S+)", out)
    return f"{m.group(1)} {m.group(2)}" if m else "handshake failed"


def tls_cases():
    certs = Certs()
    tool = bench_tool("wsbench")
    work = tempfile.mkdtemp(prefix="hpgate-bench-www-")
    os.chmod(work, 0o755)
    cmd, _ = http_backend(work)
    rows = []
    stack = Stack(cmd, tls=certs)
    try:
        time.sleep(1)
        paths = stack.paths()
        rows += wrk_cases(stack, [("8a. TLS small GET, 64 kept-alive conns", "/small", 64, None, "req/s")], "https")
        for row in rows:
            row["note"] = negotiated(paths[row["path"]][0], certs.ca)
        res = interleaved(paths, lambda port: handshakes(tool, certs.ca, port, 16), "round_trips")
        for name, rs in res.items():
            row = ws_row("8b. TLS full handshake + small GET, 16 conns", name, rs)
            row["unit"] = "handshakes/s"
            rows.append(row)
        res = interleaved(paths, lambda port: h2load(port, "/small", 8, 8), "requests")
        for name, rs in res.items():
            rows.append({"case": "8c. HTTP/2 small GET, 8 conns x 8 streams", "path": name, "unit": "req/s",
                         "value": [r["rps"] for r in rs if r["rps"] is not None],
                         "p50": [], "p99": [], "cpu": [r["cpu"] for r in rs], "sys": [r["sys"] for r in rs],
                         "bad": sum(r["bad"] for r in rs), "note": "h2load gives no percentiles"})
    finally:
        stack.close()
    stack = Stack(f'exec {tool} server --port "$HTTP_PLATFORM_PORT"', tls=certs)
    try:
        paths = stack.paths()
        res = interleaved(paths, lambda port: ws_echo(tool, port, 64, tls=certs.ca), "round_trips")
        for name, rs in res.items():
            rows.append(ws_row("8d. WSS echo, 64 conns", name, rs))
    finally:
        stack.close()
    return rows, {}


def compare_cases():
    """Issue 14: the current hpgate against an older build (BENCH_HPGATE_BEFORE), nginx alongside."""
    if not HPGATE_BEFORE:
        raise SystemExit("scripts/bench compare needs BENCH_HPGATE_BEFORE=/path/to/the/older/hpgate")
    keep = ("nginx", "hpgate", "hpgate (before)")
    tool = bench_tool("wsbench")
    work = tempfile.mkdtemp(prefix="hpgate-bench-www-")
    os.chmod(work, 0o755)
    cmd, _ = http_backend(work)
    rows = []
    for case, backend in [("C1. small GET, 64 conns, file backend (static nginx)", cmd),
                          ("C2. small GET, 64 conns, proxy-bound (hyper backend)",
                           f'exec {bench_tool("sink")} --port "$HTTP_PLATFORM_PORT"')]:
        stack = Stack(backend, before=True)
        try:
            time.sleep(1)
            paths = {k: v for k, v in stack.paths().items() if k in keep}
            res = interleaved(paths, lambda port: wrk(port, "/small", 64), "requests")
            rows += [wrk_row(case, name, rs) for name, rs in res.items()]
        finally:
            stack.close()
    stack = Stack(f'exec {tool} server --port "$HTTP_PLATFORM_PORT"', before=True)
    try:
        paths = {k: v for k, v in stack.paths().items() if k in keep}
        for case, conns in [("C3. WS echo, 1 conn sequential", 1), ("C4. WS echo, 64 conns", 64)]:
            res = interleaved(paths, lambda port: ws_echo(tool, port, conns), "round_trips")
            rows += [ws_row(case, name, rs) for name, rs in res.items()]
    finally:
        stack.close()
    return rows, {}


def wrk_row(case, name, rs):
    return {"case": case, "path": name, "unit": "req/s", "value": [r["rps"] for r in rs if r["rps"] is not None],
            "p50": [r["p50"] for r in rs], "p99": [r["p99"] for r in rs], "cpu": [r["cpu"] for r in rs],
            "sys": [r["sys"] for r in rs], "bad": sum(r["bad"] for r in rs)}
