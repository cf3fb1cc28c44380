"""Instructions per request for hpgate builds (driven by scripts/instructions).

Each build runs under callgrind with one worker thread in front of an nginx
that answers "ok" from memory. After a warm-up the counters are zeroed, wrk
sends requests for a fixed time over 64 connections, and the counters are
dumped: the instructions counted, divided by the requests wrk completed.

It also counts the atomic read-modify-write instructions among them (x86
`lock`-prefixed ones, and `xchg` with memory): callgrind counts how often each
instruction of the binary and of libc ran, objdump says which are locked.
(Before issue 19 step 14 only the binary's were counted, which hid the two
that glibc's cancellation points add around every socket call.) Each costs
about 20 cycles even when no other thread wants the line, far more than an
ordinary instruction, so a build can run fewer instructions and still spend
more time (docs/benchmarks.md, issue 19 step 11).

hpgate logs at `warn` here unless HPGATE_LOG says otherwise. `scripts/bench`
runs it at `warn,hpgate=info`, as a user's default `info` does: the
connection's log span is then entered and left on every poll, about 630
instructions per request more (docs/benchmarks.md, step 8).

`--ws` counts per WebSocket echo round trip instead (P3: `wsbench echo`, 64
connections, small messages, the one-thread `wsbench` echo server behind).
`nginx` in place of a build counts nginx as the proxy (one worker, no master
process, tuned as in `scripts/bench`), the same way.
"""
import collections
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from bench_cases import wsbench_path
from bench_core import memory_backend
from bench_stack import free_port, wait_port

WARM_S = 3
MEASURE_S = 6


def wrk(port, seconds):
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s", f"http://127.0.0.1:{port}/small"],
                         capture_output=True, text=True, check=True).stdout
    return int(next(l for l in out.splitlines() if "requests in" in l).split()[0])


def counted(files):
    """The instructions in the dump taken after zeroing (the highest-numbered part)."""
    parts = sorted(files, key=lambda f: int(f.rsplit(".", 1)[1]) if f.rsplit(".", 1)[1].isdigit() else 0)
    for line in open(parts[-1]):
        m = re.match(r"summary: (\d+)", line)
        if m:
            return int(m.group(1))
    raise SystemExit(f"no summary in {parts[-1]}")


def echo(tool):
    """A load for `--ws`: round trips of the WebSocket echo over 64 connections."""
    def run(port, seconds):
        out = subprocess.run([tool, "echo", "--url", f"ws://127.0.0.1:{port}/", "--conns", "64",
                              "--secs", str(seconds), "--mix", "small"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["round_trips"]
    return run


def nginx_proxy(workdir, port, backend_port, ws):
    """nginx as the proxy, one worker in the foreground, tuned as in scripts/bench."""
    conf = os.path.join(workdir, f"proxy-{port}.conf")
    upgrade = ("proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;"
               if ws else 'proxy_set_header Connection "";')
    open(conf, "w").write(f"""worker_processes 1; master_process off; daemon off; pid {workdir}/proxy-{port}.pid;
error_log /dev/null; events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 100000;
  upstream app {{ server 127.0.0.1:{backend_port}; keepalive 64; keepalive_requests 100000; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; proxy_http_version 1.1;
    proxy_buffering off; proxy_read_timeout 1h; {upgrade} }} }} }}
""")
    return ["nginx", "-c", conf]


def started(binary, workdir, port, ws):
    """The processes for one path: the backend (nginx only; hpgate starts its own), then the proxy."""
    backend = f'exec {wsbench_path()} server --port "$HTTP_PLATFORM_PORT"' if ws else memory_backend(workdir)
    if binary != "nginx":
        # Absolute: the processes run in `workdir`.
        return [], [os.path.abspath(binary), "run", "--listen", f"127.0.0.1:{port}", "--worker-threads", "1", "--", "sh", "-c", backend]
    backend_port = free_port()
    env = dict(os.environ, HTTP_PLATFORM_PORT=str(backend_port))
    procs = [subprocess.Popen(["sh", "-c", backend], env=env, cwd=workdir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    wait_port(backend_port, timeout=30, interval=0.2)
    return procs, nginx_proxy(workdir, port, backend_port, ws)


def measure(binary, workdir, ws):
    port = free_port()
    name = "nginx" if binary == "nginx" else os.path.basename(os.path.dirname(os.path.abspath(binary)))
    out = os.path.join(workdir, f"callgrind-{name}-{port}.out")
    load = echo(wsbench_path()) if ws else wrk
    procs, cmd = started(binary, workdir, port, ws)
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", f"--callgrind-out-file={out}"] + cmd,
        env=dict(os.environ, HPGATE_LOG=os.environ.get("HPGATE_LOG", "warn")), cwd=workdir,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Under valgrind the start takes seconds.
        wait_port(port, timeout=60, interval=0.5)
        load(port, WARM_S)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        units = load(port, MEASURE_S)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        for p in [proc] + procs:
            p.terminate()
            p.wait()
    return counted(glob.glob(out + "*")), units, out


def last_part(out):
    parts = glob.glob(out + "*")
    return sorted(parts, key=lambda f: int(f.rsplit(".", 1)[1]) if f.rsplit(".", 1)[1].isdigit() else 0)[-1]


def runs_per_address(dump, objects):
    """How often each instruction of each of `objects` ran (object ->
    Counter of addresses), from a callgrind dump written with
    --dump-instr=yes (positions "instr line", compressed)."""
    names, current, pos, call_cost = {}, None, 0, False
    runs = {os.path.realpath(o): collections.Counter() for o in objects}
    for line in open(dump):
        if line.startswith(("ob=", "cob=")):
            m = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line.strip())
            if m and m.group(2):
                names[m.group(1)] = os.path.realpath(m.group(2))
            if m and line.startswith("ob="):
                current = names.get(m.group(1))
            continue
        if line.startswith("calls="):
            call_cost = True  # the next cost line is the call's, not this function's
            continue
        if not line[:1] or line[0] not in "0123456789+-*":
            continue
        fields = line.split()
        at = fields[0]
        if at.startswith("0x"):
            pos = int(at, 16)
        elif at[0] in "+-":
            step = int(at[1:], 16) if at[1:].startswith("0x") else int(at[1:])
            pos += step if at[0] == "+" else -step
        if call_cost:
            call_cost = False
            continue
        if current in runs and len(fields) > 2:
            runs[current][pos] += int(fields[2])
    return runs


def locked_addresses(binary):
    """Addresses of the binary's atomic read-modify-write instructions."""
    listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", binary],
                             capture_output=True, text=True, check=True).stdout
    found = set()
    for line in listing.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(\S+)(.*)", line)
        if m and (m.group(2) == "lock" or (m.group(2).startswith("xchg") and "(" in m.group(3))):
            found.add(int(m.group(1), 16))
    return found


def libc_of(dump):
    """The C library the profiled process ran with, as the dump names it."""
    for line in open(dump):
        m = re.match(r"c?ob=\(\d+\) (.*/libc\.so\.\d+)$", line.strip())
        if m:
            return m.group(1)
    return None


def locked(out, binary):
    """Locked instructions run in the binary and in libc (glibc's
    cancellation points around socket calls take two each: step 14)."""
    dump = last_part(out)
    objects = [binary] + [o for o in [libc_of(dump)] if o]
    runs = runs_per_address(dump, objects)
    return sum(
        sum(runs[os.path.realpath(o)].get(a, 0) for a in locked_addresses(o)) for o in objects
    )


def main():
    args = sys.argv[1:]
    ws = "--ws" in args
    builds = [a for a in args if a != "--ws"]
    unit = "round trip" if ws else "request"
    workdir = tempfile.mkdtemp(prefix="hpgate-instructions-")
    print(f"| build | {unit}s | instructions per {unit} | locked instructions per {unit} |")
    print("|---|---|---|---|")
    for binary in builds:
        total, units, out = measure(binary, workdir, ws)
        path = shutil.which("nginx") if binary == "nginx" else binary
        atomics = locked(out, path) / units
        print(f"| {binary} | {units} | {total / units:.0f} | {atomics:.1f} |", flush=True)
    print(f"\nprofiles in {workdir} (callgrind_annotate FILE)")


if __name__ == "__main__":
    main()
