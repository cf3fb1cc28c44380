"""Benchmark driver for scripts/bench: every case, every path, one report.

Paths: the backend directly, nginx, HAProxy and hpgate, all in front of the
same backend process (which hpgate starts and supervises), interleaved run
by run. Each case runs BENCH_RUNS times (default 3), BENCH_SECS seconds each
(default 5); the report shows the median and the range. Proxy CPU per
operation = utime+stime of the proxy's processes (from /proc) during a run,
divided by the operations served: the steadiest figure when load generator,
proxy and backend share two cores.

Prints the tables, rewrites the part of docs/benchmarks.md after the
results marker, and draws docs/benchmarks.svg. The proxy-bound part
(`core`, scripts/bench_core.py), the TLS part (`tls`) and the before/after part (`compare`, needs BENCH_HPGATE_BEFORE) rewrite their own
sections of that page instead (between `<!-- tls results -->` and
`<!-- /tls results -->`, likewise `core` and `compare`), so they can run alone.
"""
import datetime
import os
import platform
import signal
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_admin import admin_cases  # noqa: E402
from bench_core import core_cases  # noqa: E402
from bench_cases import IDLE_CONNS, RUNS, SECS, WRK_THREADS, http_cases, lifecycle_case, ws_cases, wsbench_path  # noqa: E402
from bench_stack import HPGATE, ROOT  # noqa: E402
from bench_svg import draw  # noqa: E402
from bench_tls import compare_cases, tls_cases  # noqa: E402


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def table(rows):
    header = ("case", "path", "throughput median (range)", "unit", "p50 ms", "p99 ms",
              "proxy CPU us/op", "of which user", "of which kernel", "errors", "note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["case"], r["path"], spread(r["value"], "{:.0f}"), r["unit"], spread(r["p50"], "{:.2f}"),
            spread(r["p99"], "{:.2f}"), spread(r["cpu"], "{:.1f}"),
            spread(user_part(r), "{:.1f}"), spread(r.get("sys", []), "{:.1f}"), str(int(r["bad"])), r.get("note", "")]) + " |")
    return "\n".join(lines)


def user_part(r):
    """CPU per operation minus its kernel part, run by run."""
    return [c - s for c, s in zip(r["cpu"], r.get("sys", [])) if c is not None and s is not None]


def figures(facts):
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    return "\n".join(lines)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def write_section(doc, name, body):
    """Replaces (or adds, just above the main results marker) one named results section."""
    text = open(doc).read()
    start, end = f"<!-- {name} results -->", f"<!-- /{name} results -->"
    block = f"{start}\n\n{body}\n\n{end}"
    if start in text and end in text:
        text = text.split(start)[0] + block + text.split(end, 1)[1]
    else:
        marker = "<!-- results -->"
        head, sep, tail = text.partition(marker)
        text = f"{head}{block}\n\n{sep}{tail}" if sep else f"{text}\n{block}\n"
    open(doc, "w").write(text)


def side_part(name, fn, doc, stamp, machine):
    """Runs the tls or compare part and writes its own section."""
    before = loadavg()
    rows, facts = fn()
    after = loadavg()
    report = table(rows) + (f"\n\n{figures(facts)}" if facts else "")
    print(report)
    runs = (f"Run {stamp} on {machine}; {SECS} s per run, {RUNS} runs per path, interleaved; "
            f"load average (1, 5, 15 min) {before} before, {after} after.")
    write_section(doc, name, f"{runs}\n\n{report}")


def main():
    # SIGTERM unwinds like Ctrl-C, so every stack's close() runs: no proxy
    # or backend is left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    only = set(sys.argv[1:])  # e.g. `scripts/bench http ws life` (default: all)
    want = lambda part: not only or part in only
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}"
    doc = os.path.join(ROOT, "docs", "benchmarks.md")
    if want("core"):
        side_part("core", core_cases, doc, stamp, machine)
    if want("admin"):
        side_part("admin", admin_cases, doc, stamp, machine)
    if want("tls"):
        side_part("tls", tls_cases, doc, stamp, machine)
    if "compare" in only or (not only and os.environ.get("BENCH_HPGATE_BEFORE")):
        side_part("compare", compare_cases, doc, stamp, machine)
    if only and not only & {"http", "ws", "life"}:
        return
    rows, facts = [], {}
    load_before = loadavg()
    if want("http"):
        r, f = http_cases()
        rows += r
        facts.update(f)
    if want("ws"):
        r, f = ws_cases(wsbench_path())
        rows += r
        facts.update(f)
    if want("life"):
        facts.update(lifecycle_case())
    facts["7. hpgate binary size (KiB)"] = os.path.getsize(HPGATE) // 1024

    report = table(rows) + "\n\n" + figures(facts)
    print(report)
    setup = (f"wrk -t{WRK_THREADS}; wsbench (one thread); {SECS} s per run, {RUNS} runs per path, interleaved; "
             f"{IDLE_CONNS} idle WebSockets (open-files limit 20,000 per process)")
    if only:
        setup += f"; parts run: {', '.join(sorted(only))}"
    setup += f"; load average {load_before} before, {loadavg()} after"
    text = open(doc).read() if os.path.exists(doc) else ""
    marker = "<!-- results -->"
    head = text.split(marker)[0] if marker in text else text + "\n"
    svg = draw(rows)
    if svg:
        open(os.path.join(ROOT, "docs", "benchmarks.svg"), "w").write(svg)
    open(doc, "w").write(f"{head}{marker}\n\nRun {stamp} on {machine}; {setup}.\n\n"
                         f"![hpgate and HAProxy relative to nginx](benchmarks.svg)\n\n{report}\n")


if __name__ == "__main__":
    sys.exit(main())
