"""Processes for scripts/bench: a backend under hpgate, nginx and HAProxy in front of it.

Every path reaches the very same backend process: hpgate starts and
supervises it, and nginx and HAProxy are pointed at the port hpgate handed
it. Everything is torn down by close(), also on errors.
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HPGATE = os.path.join(ROOT, "target", "release", "hpgate")
# An older hpgate binary to compare with (adds the path "hpgate (before)").
HPGATE_BEFORE = os.environ.get("BENCH_HPGATE_BEFORE") or None
CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=10, interval=0.01):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(interval)
    raise RuntimeError(f"nothing listens on {port}")


def stat_fields(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def cpu_times(pids):
    """(user, system) CPU seconds the processes have used so far."""
    user = system = 0
    for pid in pids:
        try:
            f = stat_fields(pid)
            user += int(f[11])
            system += int(f[12])
        except OSError:
            pass
    return user / CLK, system / CLK


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(stat_fields(p)[1]) == pid:
                    out.append(int(p))
            except OSError:
                continue
    return out


def rss_kib(pids):
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


class Hpgate:
    """One hpgate in front of `script` (a shell script that starts the app)."""

    def __init__(self, workdir, name, script, args=(), env=None, binary=HPGATE, tls=None):
        self.port = free_port()
        self.log_path = os.path.join(workdir, f"{name}.log")
        log = open(self.log_path, "w")
        listen = ["--listen", f"127.0.0.1:{self.port}"]
        if tls:  # an HTTPS listener with the bench's certificate
            listen = ["--listen", f"https://127.0.0.1:{self.port}", "--tls-cert", tls.cert, "--tls-key", tls.key]
        self.proc = subprocess.Popen(
            [binary, "run", *listen, *args, "--", script],
            cwd=workdir, stderr=log, stdout=log,
            env={**os.environ, "HPGATE_LOG": "warn,hpgate=info", **(env or {})})
        wait_port(self.port)
        self.backend_port = self.app_port()
        wait_port(self.backend_port)

    def app_port(self, skip=0):
        """Port of the (skip+1)-th app process hpgate started."""
        end = time.time() + 15
        while time.time() < end:
            ports = re.findall(r"started app process.*port=(\d+)", open(self.log_path).read())
            if len(ports) > skip:
                return int(ports[skip])
            time.sleep(0.01)
        raise RuntimeError(f"hpgate did not start the app; see {self.log_path}")

    @property
    def pids(self):
        return [self.proc.pid]


class Stack:
    """A backend under hpgate, plus nginx and HAProxy proxying to it.

    `script_body` is the shell command that starts the backend on
    $HTTP_PLATFORM_PORT. hpgate runs one worker thread like the other
    proxies; "hpgate 2 threads" is the default build-out. `offload` adds a second hpgate (its own backend)
    with WebSocket compression done in the gateway.
    """

    def __init__(self, script_body, offload=False, tls=None, before=False, admin=False):
        self.dir = tempfile.mkdtemp(prefix="hpgate-bench-")
        os.chmod(self.dir, 0o755)  # nginx workers run as an unprivileged user
        self.procs = []
        self.tls = tls
        self.before = self.admin = self.admin_off = None
        try:
            self._start(script_body, offload)
            if before and HPGATE_BEFORE:
                # Like "hpgate" (one thread), its own copy of the backend.
                self.before = Hpgate(self.dir, "hpgate-before", self.script, ["--worker-threads", "1"],
                                     binary=HPGATE_BEFORE)
                self.procs.append(self.before.proc)
            if admin:
                # Issue 18: the same one-thread hpgate with the admin listener on
                # (its own copy of the backend), to show what the metrics cost.
                self.admin = Hpgate(self.dir, "hpgate-admin", self.script,
                                    ["--worker-threads", "1", "--admin", f"127.0.0.1:{free_port()}"])
                self.procs.append(self.admin.proc)
                # Its control: started the same way right after it, admin off.
                # "hpgate" itself was started first, beside nginx and HAProxy,
                # and two processes of one binary differ by several percent
                # from placement alone; on/off compares like with like.
                self.admin_off = Hpgate(self.dir, "hpgate-admin-off", self.script, ["--worker-threads", "1"])
                self.procs.append(self.admin_off.proc)
        except BaseException:
            self.close()
            raise

    def _start(self, script_body, offload):
        script = self.script = os.path.join(self.dir, "backend.sh")
        open(script, "w").write(f"#!/bin/sh\n{script_body}\n")
        os.chmod(script, 0o755)
        tls = self.tls
        # One worker thread, as nginx (worker_processes 1) and HAProxy
        # (nbthread 1) run here; a second hpgate with the default (one
        # thread per CPU) supervises its own copy of the backend.
        one = ["--worker-threads", "1"]
        self.hpgate = Hpgate(self.dir, "hpgate", script, one, tls=tls)
        self.procs.append(self.hpgate.proc)
        self.hpgate_default = Hpgate(self.dir, "hpgate-default", script, tls=tls)
        self.procs.append(self.hpgate_default.proc)
        self.offload = None
        if offload:
            self.offload = Hpgate(self.dir, "hpgate-offload", script, one + ["--websocket-compression", "offload"])
            self.procs.append(self.offload.proc)
        backend = self.hpgate.backend_port
        self.nginx_port, self.haproxy_port = free_port(), free_port()
        conf = os.path.join(self.dir, "nginx-proxy.conf")
        listen, ssl = f"127.0.0.1:{self.nginx_port}", ""
        if tls:
            # nginx 1.22 (Debian 12) predates `http2 on;`: HTTP/2 is a listen flag there.
            # Session cache and keep-alive as nginx's docs recommend for HTTPS.
            listen += " ssl http2"
            # Its default protocols before 1.23.4 stop at TLS 1.2: TLS 1.3 named, as the others do it.
            ssl = (f"ssl_certificate {tls.cert}; ssl_certificate_key {tls.key}; ssl_protocols TLSv1.2 TLSv1.3; "
                   "ssl_session_cache shared:SSL:10m; ssl_session_timeout 10m;")
        # As nginx's docs recommend for WebSocket and streaming; kept-alive
        # connections on both sides live for 100,000 requests (the default
        # 1,000 would make wrk and nginx reconnect during a proxy-bound run).
        open(conf, "w").write(f"""worker_processes 1; pid {self.dir}/nginx-proxy.pid; error_log /dev/null;
worker_rlimit_nofile 20000;
events {{ worker_connections 16000; }}
http {{ access_log off; client_max_body_size 4m; keepalive_requests 100000; {ssl}
  upstream app {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 100000; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{ listen {listen};
    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_buffering off; proxy_request_buffering off;
      proxy_read_timeout 1h; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host; }} }} }}
""")
        self.nginx = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
        self.procs.append(self.nginx)
        hconf = os.path.join(self.dir, "haproxy.cfg")
        # maxconn stays under the 20,000 open-files limit (two per connection).
        open(hconf, "w").write(f"""global
  maxconn 8000
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
  http-reuse always
frontend f
  bind 127.0.0.1:{self.haproxy_port}{f" ssl crt {tls.combined} alpn h2,http/1.1" if tls else ""}
  default_backend b
backend b
  server app 127.0.0.1:{backend}
""")
        self.haproxy = subprocess.Popen(["haproxy", "-f", hconf, "-db"])
        self.procs.append(self.haproxy)
        wait_port(self.nginx_port)
        wait_port(self.haproxy_port)
        self.nginx_workers = children(self.nginx.pid)

    def paths(self):
        """name -> (port, pids whose CPU and memory count as the proxy's)."""
        out = {
            "direct": (self.hpgate.backend_port, []),
            "nginx": (self.nginx_port, [self.nginx.pid] + self.nginx_workers),
            "haproxy": (self.haproxy_port, [self.haproxy.pid]),
            "hpgate": (self.hpgate.port, self.hpgate.pids),
            "hpgate 2 threads": (self.hpgate_default.port, self.hpgate_default.pids),
        }
        if self.tls:  # the backend speaks plain HTTP: no direct TLS path
            del out["direct"]
        if self.admin:
            out["hpgate admin on"] = (self.admin.port, self.admin.pids)
            out["hpgate admin off"] = (self.admin_off.port, self.admin_off.pids)
        if self.before:
            out["hpgate (before)"] = (self.before.port, self.before.pids)
        return out

    def close(self):
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
