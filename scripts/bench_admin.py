"""The admin listener's cost (`scripts/bench admin`, issue 18 item 5).

Two one-thread hpgates with their own copy of the proxy-bound backend (nginx
`return 200`), one with `--admin`, measured in alternating rounds. Two
processes of one binary differ by several percent from where the kernel
places them and their backends on two cores, so the pair is started twice,
in both orders, and each order gets BENCH_ADMIN_ROUNDS rounds (default 8).
The figure is the median CPU per request with the listener on against off,
for each order and for both pooled, beside the noise floor: how far apart
the two halves of the same process's own rounds are.
"""
import os
import shutil
import statistics
import tempfile

from bench_cases import measured, set_cpu, wrk
from bench_core import memory_backend, user
from bench_stack import Hpgate, free_port
from bench_tls import wrk_row

ROUNDS = int(os.environ.get("BENCH_ADMIN_ROUNDS", "8"))


def pair(work, script, admin_first):
    """Starts the on/off pair in the given order; name -> Hpgate."""
    names = ["admin on", "admin off"] if admin_first else ["admin off", "admin on"]
    out = {}
    for name in names:
        args = ["--worker-threads", "1"]
        if name == "admin on":
            args += ["--admin", f"127.0.0.1:{free_port()}"]
        out[name] = Hpgate(work, f"hpgate-{name.replace(' ', '-')}", script, args)
    return out


def rounds(gateways):
    """ROUNDS alternating runs; each round starts with the other one."""
    names = list(gateways)
    results = {name: [] for name in names}
    for i in range(ROUNDS):
        for name in names if i % 2 == 0 else names[::-1]:
            g = gateways[name]
            r, times = measured(g.pids, lambda: wrk(g.port, "/small", 64))
            set_cpu(r, times, r["requests"], True)
            results[name].append(r)
    return results


def halves_apart(rs):
    """How far the medians of a path's first and second half of rounds differ."""
    cpu = [r["cpu"] for r in rs if r["cpu"]]
    half = len(cpu) // 2
    if half == 0:
        return 0.0
    a, b = statistics.median(cpu[:half]), statistics.median(cpu[half:])
    return abs(a / b - 1)


def admin_cases():
    work = tempfile.mkdtemp(prefix="hpgate-bench-admin-")
    os.chmod(work, 0o755)
    script = os.path.join(work, "backend.sh")
    open(script, "w").write(f"#!/bin/sh\n{memory_backend(work)}\n")
    os.chmod(script, 0o755)
    case = "A. small GET, 64 conns, proxy-bound: admin listener on and off"
    rows, facts, pooled, noise = [], {}, {"admin on": [], "admin off": []}, []
    try:
        for admin_first in (True, False):
            order = "on started first" if admin_first else "off started first"
            gateways = pair(work, script, admin_first)
            try:
                res = rounds(gateways)
            finally:
                for g in gateways.values():
                    g.proc.terminate()
                    g.proc.wait(10)
            for name, rs in res.items():
                rows.append(user(wrk_row(f"{case} ({order})", f"hpgate {name}", rs)))
                pooled[name] += [r["cpu"] for r in rs if r["cpu"]]
                noise.append(halves_apart(rs))
            on = statistics.median(r["cpu"] for r in res["admin on"] if r["cpu"])
            off = statistics.median(r["cpu"] for r in res["admin off"] if r["cpu"])
            facts[f"A. CPU per request, admin on vs off ({order})"] = f"{(on / off - 1) * 100:+.1f}%"
        both = statistics.median(pooled["admin on"]) / statistics.median(pooled["admin off"]) - 1
        facts["A. CPU per request, admin on vs off (both orders, target within noise, <= 3%)"] = f"{both * 100:+.1f}%"
        facts["A. noise floor: one process's first half of rounds against its second (largest)"] = f"{max(noise) * 100:.1f}%"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, facts
