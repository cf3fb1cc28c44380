"""Instructions per request for hpgate builds (driven by scripts/instructions).

Each build runs under callgrind with one worker thread in front of an nginx
that answers "ok" from memory. After a warm-up the counters are zeroed, wrk
sends requests for a fixed time over 64 connections, and the counters are
dumped: the instructions counted, divided by the requests wrk completed.

hpgate logs at `warn` here unless HPGATE_LOG says otherwise. `scripts/bench`
runs it at `warn,hpgate=info`, as a user's default `info` does: the
connection's log span is then entered and left on every poll, about 630
instructions per request more (docs/benchmarks.md, step 8).
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

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


def measure(binary, workdir):
    port = free_port()
    out = os.path.join(workdir, f"callgrind-{os.path.basename(os.path.dirname(os.path.abspath(binary)))}-{port}.out")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "run",
         "--listen", f"127.0.0.1:{port}", "--worker-threads", "1", "--", "sh", "-c", memory_backend(workdir)],
        env=dict(os.environ, HPGATE_LOG=os.environ.get("HPGATE_LOG", "warn")), cwd=workdir,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Under valgrind the start takes seconds.
        wait_port(port, timeout=60, interval=0.5)
        wrk(port, WARM_S)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], capture_output=True, check=True)
        requests = wrk(port, MEASURE_S)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=True)
    finally:
        proc.terminate()
        proc.wait()
    return counted(glob.glob(out + "*")), requests, out


def main():
    workdir = tempfile.mkdtemp(prefix="hpgate-instructions-")
    print("| build | requests | instructions per request |")
    print("|---|---|---|")
    for binary in sys.argv[1:]:
        total, requests, out = measure(binary, workdir)
        print(f"| {binary} | {requests} | {total / requests:.0f} |", flush=True)
    print(f"\nprofiles in {workdir} (callgrind_annotate FILE)")


if __name__ == "__main__":
    main()
