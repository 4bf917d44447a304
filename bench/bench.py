#!/usr/bin/env python3
"""Porter side by side with nginx, HAProxy and Caddy (Debian packages).

Each contestant terminates TLS with the same ECDSA P-256 certificate for `localhost` in front of
the same backend (an nginx serving a small body and a 64 KiB file), all on loopback. The proxy
is pinned to core 0 and the load generator to core 1; contestants run in interleaved rounds
(A B C D A B C D ...) and the table shows medians, with ratios to the best peer. Next to every
rate is the proxy's own CPU time per unit of work (from /proc/PID/stat), which stays comparable
when the load generator is the bottleneck.

Usage: bench/bench.py [--rounds N] [--seconds S] [--only porter,nginx,...]
       bench/bench.py --baseline OLD/porter --only porter,baseline   (A/B of a change)
       bench/bench.py --scale 100000   (Porter alone: start time, RSS and handshakes with N sites)
       bench/bench.py --scale 100000 --etcd   (the same on a fresh etcd from Debian, seeded first)
       bench/bench.py --waf   (keep-alive CPU per request: Porter with its WAF off, detecting
                               and blocking at paranoia 1, on clean requests, beside nginx)
       bench/bench.py --cache   (HTTP cache hits: Porter with `--cache on` beside nginx
                                 proxy_cache and Varnish, 1 KiB and 64 KiB, see cache_scenario)
       bench/bench.py --figures h1,h2 --baseline OLD/porter --only porter,baseline
                                (only some figures: h1 h2 full resumed big mem pq h3 h3new;
                                 pq: full handshakes offering X25519MLKEM768 or X25519 alone;
                                 h3, h3new: HTTP/3 with bench/h3load.rs, Porter and Caddy only)
       bench/bench.py --breakdown --figures h1,h2 --only porter,haproxy
                                (user/kernel time, system calls, context switches per request
                                 and the top of a perf profile, side by side; needs strace, perf)
       --porter BINARY measures that build of Porter instead of building target/release/porter.
Needs: cargo, nginx, haproxy, caddy, wrk, h2load (nghttp2-client), openssl, taskset; with
--cache, varnishd (apt-get install -y varnish; its Debian service need not run).
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = {"nginx": "nginx-light", "haproxy": "haproxy", "caddy": "caddy", "wrk": "wrk",
         "h2load": "nghttp2-client", "openssl": "openssl", "taskset": "util-linux", "cargo": "rustup"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
IDLE_CONNECTIONS = 5000
BASELINE = None
# Environment given to the baseline contestant alone (--baseline-env), e.g. the same binary
# with its access log on.
BASELINE_ENV = {}
# The post-quantum handshake client (bench/handshakes.rs), built with --figures ...,pq.
HANDSHAKES = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                          "release", "examples", "handshakes")
# The HTTP/3 load client (bench/h3load.rs), built with --figures ...,h3 or h3new.
H3LOAD = os.path.join(os.path.dirname(HANDSHAKES), "h3load")
# Contestants that serve HTTP/3 (Debian's nginx 1.22 and HAProxy 2.6 do not).
HTTP3 = ("porter", "baseline", "caddy")
# The Porter binary measured as contestant 'porter' (--porter; default: built in the tree).
PORTER = os.path.join(ROOT, "target", "release", "porter")
# The cache scenario's bodies: path on the origin -> size. The origin answers them with
# Cache-Control: max-age=3600 and logs them (the only requests it logs), so that a measured run
# shows how many requests reached it.
CACHED = {"/c1k": 1024, "/c64k": 65536}
# The plain-HTTP name of the cache scenario: Porter serves a site without a certificate over
# HTTP (one with a certificate is redirected), so the cleartext figures use this Host.
PLAIN_HOST = "cache.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except FileNotFoundError:
            pass
    return total / CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def process_tree(pid):
    """The pid and its descendants (nginx and haproxy workers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            pass
    return pids


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Contestant:
    def __init__(self, name, work, cert, key, backend, cache=False):
        self.name, self.work, self.cert, self.key, self.backend = name, work, cert, key, backend
        self.port = free_port()
        self.proc = None
        # The cache scenario: every contestant caches, and also listens on cleartext HTTP/1.1
        # (http_port) and cleartext HTTP/2 with prior knowledge (h2c_port, which may be the
        # same port; None when the contestant cannot); port is HTTPS (None: no TLS).
        self.cache = cache
        self.http_port = free_port()
        self.h2c_port = self.http_port

    def pids(self):
        return process_tree(self.proc.pid)

    def start(self):
        cmd = getattr(self, "command_" + self.name)()
        self.proc = subprocess.Popen(["taskset", "-c", "0"] + cmd, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.work, self.name + ".log"), "w"),
                                     start_new_session=True)
        for port in (self.port, self.http_port, self.h2c_port) if self.cache else (self.port,):
            if port:
                wait_port(port)
        time.sleep(0.5)

    def stop(self):
        if self.proc:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def command_porter(self):
        return self.porter_command(PORTER)

    def command_waf_detect(self):
        return self.porter_command(PORTER, waf="detect")

    def command_waf_block(self):
        return self.porter_command(PORTER, waf="block")

    def command_baseline(self):
        # Another build of Porter (--baseline), for an A/B of a change.
        return self.porter_command(BASELINE, BASELINE_ENV)

    def porter_command(self, porter, extra_env=None, waf=None):
        data = os.path.join(self.work, self.name + ("-cache" if self.cache else "") + "-data")
        env = dict(os.environ, PORTER_LOG="warn")
        if not os.path.exists(data):
            # Only `init` (or `serve`) makes a store; the other commands refuse to.
            run([porter, "--data-dir", data, "init"], env=env)
            run([porter, "--data-dir", data, "site", "add", "localhost", "--upstream", f"127.0.0.1:{self.backend}"], env=env)
            run([porter, "--data-dir", data, "cert", "import", "localhost", "--cert", self.cert, "--key", self.key], env=env)
            if waf:
                run([porter, "--data-dir", data, "site", "update", "localhost", "--waf", waf], env=env)
            if self.cache:
                # HTTPS on `localhost`; cleartext on a site without a certificate.
                run([porter, "--data-dir", data, "site", "add", PLAIN_HOST, "--upstream", f"127.0.0.1:{self.backend}"], env=env)
                for site in ("localhost", PLAIN_HOST):
                    run([porter, "--data-dir", data, "site", "update", site, "--cache", "on"], env=env)
        os.environ["PORTER_LOG"] = "warn"
        # Every load generator connects from 127.0.0.1: no limits per address. Given by
        # environment, which an older build (a --baseline) that lacks one of them ignores.
        for name in ("MAX_CONNECTIONS_PER_IP", "MAX_HANDSHAKES_PER_IP", "HANDSHAKE_RATE_PER_IP"):
            os.environ["PORTER_" + name] = "0"
        for name in BASELINE_ENV:
            os.environ.pop(name, None)
        os.environ.update(extra_env or {})
        return [porter, "--data-dir", data, "serve", "--https", f"127.0.0.1:{self.port}",
                "--http", f"127.0.0.1:{self.http_port}", "--admin", f"127.0.0.1:{free_port()}",
                "--default-sni", "localhost", "--max-connections", "20000"] + (
                    ["--cache-memory", "256MiB"] if self.cache else [])

    def command_nginx(self):
        if self.cache:
            return self.nginx_cache_command()
        conf = os.path.join(self.work, "nginx-proxy.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {self.work}/nginx-proxy.pid; error_log stderr error;
worker_rlimit_nofile 19000;
events {{ worker_connections 12000; }}
http {{ access_log off; keepalive_requests 1000000; client_body_temp_path {self.work}/nb; proxy_temp_path {self.work}/np;
  fastcgi_temp_path {self.work}/nf; uwsgi_temp_path {self.work}/nu; scgi_temp_path {self.work}/ns;
  upstream backend {{ server 127.0.0.1:{self.backend}; keepalive 64; }}
  server {{ listen 127.0.0.1:{self.port} ssl http2; server_name localhost;
    ssl_certificate {self.cert}; ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
    location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_buffering off; }} }} }}
""")
        return ["nginx", "-c", conf, "-p", self.work]

    def nginx_cache_command(self):
        """nginx with proxy_cache (on disk in a fresh directory, as nginx caches; the hits are
        read from the page cache, with sendfile in cleartext), honouring the origin's
        Cache-Control. Not tcp_nopush: with it, 64 KiB hits over loopback stall (about 1,800/s
        instead of 8,000/s, the proxy mostly idle). Cleartext HTTP/2 needs a listener of its
        own in nginx 1.22 (`listen ... http2` without ssl takes only HTTP/2 with prior
        knowledge)."""
        self.h2c_port = free_port()
        cache = os.path.join(self.work, f"nginx-cache-{self.port}")
        conf = os.path.join(self.work, "nginx-cache.conf")
        location = f"""location / {{ proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host $host; proxy_cache bench; add_header X-Cache-Status $upstream_cache_status; }}"""
        with open(conf, "w") as f:
            f.write(f"""daemon off; worker_processes 1; pid {self.work}/nginx-cache.pid; error_log stderr error;
worker_rlimit_nofile 19000;
events {{ worker_connections 12000; }}
http {{ access_log off; keepalive_requests 1000000; sendfile on;
  client_body_temp_path {self.work}/nb; proxy_temp_path {self.work}/np;
  fastcgi_temp_path {self.work}/nf; uwsgi_temp_path {self.work}/nu; scgi_temp_path {self.work}/ns;
  proxy_cache_path {cache} levels=1:2 keys_zone=bench:10m max_size=256m inactive=1h use_temp_path=off;
  upstream backend {{ server 127.0.0.1:{self.backend}; keepalive 64; }}
  server {{ listen 127.0.0.1:{self.http_port}; server_name localhost; {location} }}
  server {{ listen 127.0.0.1:{self.h2c_port} http2; server_name localhost; {location} }}
  server {{ listen 127.0.0.1:{self.port} ssl http2; server_name localhost;
    ssl_certificate {self.cert}; ssl_certificate_key {self.key};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:SSL:10m; ssl_session_tickets on;
    {location} }} }}
""")
        return ["nginx", "-c", conf, "-p", self.work]

    def command_varnish(self):
        """Varnish (malloc storage of 256 MiB, the built-in VCL, which caches by the origin's
        Cache-Control) in a work directory of its own. It has no TLS: no HTTPS figures. HTTP/2
        with prior knowledge on the same port with feature=+http2."""
        self.port = None
        self.h2c_port = self.http_port
        vwork = os.path.join(self.work, f"varnish-{self.http_port}")
        os.makedirs(vwork)
        return ["varnishd", "-F", "-a", f"127.0.0.1:{self.http_port}", "-b", f"127.0.0.1:{self.backend}",
                "-s", "malloc,256m", "-n", vwork, "-p", "feature=+http2", "-T", "none"]

    def command_haproxy(self):
        pem = os.path.join(self.work, "haproxy.pem")
        with open(pem, "w") as f:
            f.write(open(self.cert).read() + open(self.key).read())
        conf = os.path.join(self.work, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""global
  maxconn 8000
  nbthread 1
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:{self.port} ssl crt {pem} alpn h2,http/1.1
  default_backend be
backend be
  server s1 127.0.0.1:{self.backend}
""")
        return ["haproxy", "-f", conf, "-db"]

    def command_caddy(self):
        conf = os.path.join(self.work, "Caddyfile")
        with open(conf, "w") as f:
            f.write(f"""{{
  admin off
  auto_https off
  default_sni localhost
  storage file_system {self.work}/caddy
}}
https://localhost:{self.port} {{
  bind 127.0.0.1
  tls {self.cert} {self.key}
  reverse_proxy 127.0.0.1:{self.backend}
}}
""")
        env_home = os.path.join(self.work, "caddy-home")
        os.makedirs(env_home, exist_ok=True)
        os.environ["XDG_DATA_HOME"] = env_home
        os.environ["XDG_CONFIG_HOME"] = env_home
        return ["caddy", "run", "--config", conf, "--adapter", "caddyfile"]


def load(cmd):
    return subprocess.run(["taskset", "-c", "1"] + cmd, capture_output=True, text=True).stdout


def measured(c, cmd):
    before = cpu_seconds(c.pids())
    out = load(cmd)
    return out, cpu_seconds(c.pids()) - before


def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def wrk(c, path, seconds):
    out, cpu = measured(c, ["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", f"https://localhost:{c.port}{path}"])
    if "Non-2xx" in out:
        raise SystemExit(f"{c.name} answered errors on {path}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    p = {k: ms(*re.match(r"([\d.]+)(\w+)", v).groups()) for k, v in lat.items()}
    return {"rps": rps, "p50": p.get("50"), "p99": p.get("99"), "cpu_us": cpu / max(total, 1) * 1e6}


def h2(c, seconds):
    out, cpu = measured(c, ["h2load", "-c16", "-m16", "-D", str(seconds), f"https://localhost:{c.port}/"])
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done", out)
    if not m or not done:
        return {"rps": 0.0, "cpu_us": float("nan")}
    return {"rps": float(m.group(1)), "cpu_us": cpu / max(int(done.group(1)), 1) * 1e6}


def hit_marked(name, headers):
    """Whether a response was a cache hit, by each contestant's own mark."""
    h = {k.lower(): v for k, v in headers}
    if name in ("porter", "baseline"):
        return "hit" in h.get("cache-status", "")
    if name == "nginx":
        return h.get("x-cache-status") == "HIT"
    if name == "varnish":
        return len(h.get("x-varnish", "").split()) == 2 or int(h.get("age", "0") or 0) > 0
    return False


def cache_get(c, path, tls):
    """One GET over HTTP/1.1 (HTTPS to `localhost`, or cleartext with PLAIN_HOST): status,
    headers, body length."""
    import http.client
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection("localhost", c.port, context=ctx, timeout=5)
        host = "localhost"
    else:
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=5)
        host = PLAIN_HOST
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.getheaders(), len(r.read())
    finally:
        conn.close()


def warm(c):
    """Fills the contestant's cache with every body, cleartext and HTTPS, and checks that the
    next request of each is a hit of the right size."""
    for tls in [False] + ([True] if c.port else []):
        for path, size in CACHED.items():
            for _ in range(20):
                status, headers, length = cache_get(c, path, tls)
                if status != 200 or length != size:
                    raise SystemExit(f"{c.name}: {path} answered {status} with {length} bytes")
                if hit_marked(c.name, headers):
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(f"{c.name}: {path} ({'https' if tls else 'http'}) is never a hit: {headers}")


def origin_requests(log):
    """Requests the origin has answered for the cached bodies (its log of them)."""
    try:
        with open(log, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def cache_hits(c, mode, path, seconds, log):
    """Hits of `path` for `seconds`: HTTP/1.1 keep-alive over cleartext (wrk, 64 connections),
    or HTTP/2 with 16 connections of 16 streams (h2load) in cleartext (h2c, prior knowledge)
    or over TLS. Rate, proxy CPU per hit, and the requests the origin got meanwhile."""
    nan = {"rps": float("nan"), "cpu_us": float("nan"), "origin": 0}
    if mode == "h1":
        cmd = ["wrk", "-t1", "-c64", f"-d{seconds}s", "-H", f"Host: {PLAIN_HOST}",
               f"http://127.0.0.1:{c.http_port}{path}"]
    elif mode == "h2c":
        if not c.h2c_port:
            return nan
        cmd = ["h2load", "-c16", "-m16", "-D", str(seconds), "-H", f":authority: {PLAIN_HOST}",
               f"http://127.0.0.1:{c.h2c_port}{path}"]
    else:
        if not c.port:
            return nan
        cmd = ["h2load", "-c16", "-m16", "-D", str(seconds), f"https://localhost:{c.port}{path}"]
    before = origin_requests(log)
    out, cpu = measured(c, cmd)
    origin = origin_requests(log) - before
    if mode == "h1":
        if "Non-2xx" in out or "Socket errors" in out:
            raise SystemExit(f"{c.name} answered errors on {path}:\n{out}")
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        total = int(re.search(r"(\d+) requests in", out).group(1))
    else:
        m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        if not m or not done or not codes or int(done.group(1)) == 0:
            raise SystemExit(f"{c.name}: h2load failed on {path} ({mode}):\n{out}")
        if sum(int(n) for n in codes.groups()[1:]) or int(done.group(2)) < int(done.group(1)):
            raise SystemExit(f"{c.name} answered errors on {path} ({mode}):\n{out}")
        rps, total = float(m.group(1)), int(done.group(1))
    return {"rps": rps, "cpu_us": cpu / max(total, 1) * 1e6, "origin": origin}


CACHE_FIGURES = [  # (key, mode, path, label)
    ("h1_1k", "h1", "/c1k", "HTTP/1.1 keep-alive 1 KiB hits/s (cleartext)"),
    ("h1_64k", "h1", "/c64k", "HTTP/1.1 keep-alive 64 KiB hits/s (cleartext)"),
    ("h2c_1k", "h2c", "/c1k", "HTTP/2 1 KiB hits/s (h2c, 16x16 streams)"),
    ("h2c_64k", "h2c", "/c64k", "HTTP/2 64 KiB hits/s (h2c, 16x16 streams)"),
    ("h2_1k", "h2", "/c1k", "HTTP/2 1 KiB hits/s (TLS, 16x16 streams)"),
    ("h2_64k", "h2", "/c64k", "HTTP/2 64 KiB hits/s (TLS, 16x16 streams)"),
]


def cache_scenario(names, rounds, seconds, work, cert, key, backend, log):
    """Every contestant caches the origin's responses (Cache-Control: max-age=3600): Porter
    with `--cache on` on its sites, nginx with proxy_cache, Varnish. Each cache is warmed and
    its hits checked before the measured runs; the origin's log counts what still reaches it."""
    results = {n: [] for n in names}
    for r in range(rounds):
        for name in names:
            c = Contestant(name, work, cert, key, backend, cache=True)
            c.start()
            try:
                warm(c)
                row = {k: cache_hits(c, mode, path, seconds, log) for k, mode, path, _ in CACHE_FIGURES}
            finally:
                c.stop()
            results[name].append(row)
            print(f"round {r + 1} {name}: {json.dumps(row)}", file=sys.stderr)
    figures = []
    for k, _, _, label in CACHE_FIGURES:
        figures += [(label, k, "rps", True), ("  proxy CPU us/hit", k, "cpu_us", False)]
    print_table(names, results, figures, "porter / best peer" if "porter" in names and len(names) > 1 else None)
    origin = {n: sum(v["origin"] for row in results[n] for v in row.values()) for n in names}
    print("\norigin requests during all measured runs: " + ", ".join(f"{n} {origin[n]}" for n in names))
    print("'-': the contestant cannot (Varnish has no TLS).")


def http10_status(c):
    """The status line of what s_time asks (no SNI, HTTP/1.0 without Host), as each contestant answers it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", c.port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return s.recv(4096).decode(errors="replace").split("\r\n")[0]


def handshakes(c, seconds, reuse):
    """openssl s_time (no SNI, HTTP/1.0 without Host): two in parallel to load the server."""
    status = http10_status(c)
    if " 200 " not in status + " ":
        raise SystemExit(f"{c.name} answered {status!r} to s_time's request")
    before = cpu_seconds(c.pids())
    mode = "-reuse" if reuse else "-new"
    procs = [subprocess.Popen(["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{c.port}",
                               mode, "-time", str(seconds), "-www", "/"], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    count = 0
    for p in procs:
        out = p.communicate()[0]
        m = re.findall(r"(\d+) connections in [\d.]+s", out)
        count += int(m[-1]) if m else 0
    cpu = cpu_seconds(c.pids()) - before
    if count == 0:
        return {"cps": float("nan"), "cpu_us": float("nan")}
    return {"cps": count / seconds, "cpu_us": cpu / count * 1e6}


def pq_handshakes(c, seconds, group):
    """bench/handshakes.rs (full TLS 1.3 handshakes, GET / HTTP/1.0) offering only `group`: the
    post-quantum hybrid against X25519 alone. Porter's builds only: Debian's peers link OpenSSL
    3.0, which has no ML-KEM, so the hybrid would end in a retry to X25519 there."""
    if c.name not in ("porter", "baseline"):
        return {"cps": float("nan"), "cpu_us": float("nan")}
    out, cpu = measured(c, [HANDSHAKES, f"127.0.0.1:{c.port}", str(seconds), group, "2"])
    m = re.search(r"(\d+) connections in", out)
    count = int(m.group(1)) if m else 0
    if count == 0:
        return {"cps": float("nan"), "cpu_us": float("nan")}
    return {"cps": count / seconds, "cpu_us": cpu / count * 1e6}


def h3load(c, seconds, mode, n):
    """bench/h3load.rs: GETs of / over HTTP/3, on one connection with `n` streams at a time
    (mode streams), or by `n` clients each opening a new connection per request (connections,
    full handshakes). Contestants without HTTP/3 get no figure."""
    if c.name not in HTTP3:
        return {"rps": float("nan"), "cpu_us": float("nan")}
    out, cpu = measured(c, [H3LOAD, f"127.0.0.1:{c.port}", str(seconds), mode, str(n)])
    m = re.search(r"(\d+) (requests|connections) in", out)
    count = int(m.group(1)) if m else 0
    if count == 0:
        raise SystemExit(f"{c.name}: no HTTP/3 answer ({out.strip()!r})")
    return {"rps": count / seconds, "cpu_us": cpu / count * 1e6}


def cpu_split(pids):
    """User and system seconds, and context switches (every thread), of `pids`."""
    user = system = switches = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/status") as f:
                    switches += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
        except FileNotFoundError:
            pass
    return user / CLK_TCK, system / CLK_TCK, switches


def breakdown(c, figure, seconds):
    """Where a request's cost goes, for `figure` (h1 or h2): user and kernel CPU time and
    context switches per request from /proc in a run of its own; system calls per request
    under `strace -c -f` in a second run (strace slows the proxy, not what it calls per
    request); the top of a `perf record -e cpu-clock` profile in a third."""
    run_load = (lambda: wrk(c, "/", seconds)) if figure == "h1" else (lambda: h2(c, seconds))
    before = cpu_split(c.pids())
    plain = run_load()
    after = cpu_split(c.pids())
    n = max(plain["rps"] * seconds, 1)
    row = {"rps": plain["rps"], "user_us": (after[0] - before[0]) / n * 1e6,
           "sys_us": (after[1] - before[1]) / n * 1e6, "switches": (after[2] - before[2]) / n}
    out = os.path.join(c.work, f"strace-{c.name}-{figure}.txt")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out] + [a for pid in c.pids() for a in ("-p", str(pid))],
                              stderr=subprocess.DEVNULL)
    time.sleep(1)
    traced = run_load()
    tracer.send_signal(signal.SIGINT)
    tracer.wait()
    with open(out) as f:
        # "% time, seconds, usecs/call, calls, errors, syscall": the calls of the total line.
        total = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)", f.read(), re.M)
    row["syscalls"] = int(total.group(1)) / max(traced["rps"] * seconds, 1) if total else float("nan")
    data = os.path.join(c.work, f"perf-{c.name}-{figure}.data")
    recorder = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-o", data, "-p", ",".join(map(str, c.pids()))],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    run_load()
    recorder.send_signal(signal.SIGINT)
    recorder.wait()
    report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
                             "--percent-limit", "1"], capture_output=True, text=True).stdout
    row["top"] = [" ".join(line.split()).removesuffix(" - -") for line in report.splitlines()
                  if line.strip() and not line.startswith("#")][:15]
    return row


def print_breakdown(names, rows):
    for figure in ("h1", "h2"):
        if not any(figure in rows[n] for n in names):
            continue
        print(f"\n{figure}: per request | req/s | user us | kernel us | system calls | context switches |")
        print("|---|---|---|---|---|---|")
        for n in names:
            r = rows[n].get(figure)
            if r:
                print(f"| {n} | {r['rps']:.0f} | {r['user_us']:.2f} | {r['sys_us']:.2f} | "
                      f"{r['syscalls']:.2f} | {r['switches']:.3f} |")
        for n in names:
            r = rows[n].get(figure)
            if r:
                print(f"\n{n}, {figure}: top of the profile (perf, cpu-clock, >= 1 %)")
                print("\n".join("    " + line for line in r["top"]))


def idle_memory(c):
    """RSS idle, then while holding IDLE_CONNECTIONS idle TLS connections (KiB per connection)."""
    idle = rss_kib(c.pids())
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conns = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", c.port))
            conns.append(ctx.wrap_socket(s, server_hostname="localhost"))
        time.sleep(1)
        held = rss_kib(c.pids())
    finally:
        for s in conns:
            s.close()
    return {"idle_mib": idle / 1024, "per_conn_kib": (held - idle) / IDLE_CONNECTIONS}


def start_etcd(data):
    """A fresh etcd (Debian's etcd-server) with its data in `data`: (process, client port)."""
    if not shutil.which("etcd"):
        raise SystemExit("missing: etcd (apt-get install -y etcd-server)")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    client, peer = free_port(), free_port()
    c, p = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(["taskset", "-c", "1", "etcd", "--name", "bench", "--data-dir", os.path.join(data, "member"),
                             "--listen-client-urls", c, "--advertise-client-urls", c,
                             "--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
                             "--initial-cluster", f"bench={p}", "--logger", "zap",
                             "--log-outputs", os.path.join(data, "etcd.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request
    for _ in range(500):
        try:
            if b'"true"' in urllib.request.urlopen(f"{c}/health", timeout=1).read():
                return proc, client
        except OSError:
            time.sleep(0.02)
    raise SystemExit("etcd did not become healthy")


def etcd_db_mib(client):
    """etcd's database size (its own metric), in MiB."""
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{client}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("etcd_mvcc_db_total_size_in_bytes "):
            return float(line.split()[1]) / 2**20
    return float("nan")


def scale(n, etcd=False):
    """Porter with `n` sites and certificates (in sled, or in a fresh etcd): time from start
    to the first served handshake, RSS, the handshake time of names not recently used, and the
    time of a metrics scrape once every site has had a request."""
    import random
    data = os.path.join(ROOT, "target", f"bench-scale-{n}" + ("-etcd" if etcd else ""))
    store_flags, etcd_proc = [], None
    if etcd:
        os.makedirs(data, exist_ok=True)
        etcd_proc, client = start_etcd(os.path.join(data, "etcd"))
        address = f"etcd://127.0.0.1:{client}/scale"
        print(f"seeding {n} sites into {address}", file=sys.stderr)
        t = time.time()
        subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "porter-store", "--example", "seed", "--",
                        address, str(n), "127.0.0.1:9"], cwd=ROOT, check=True)
        print(f"seeded in {time.time() - t:.0f} s; etcd's database: {etcd_db_mib(client):.0f} MiB", file=sys.stderr)
        store_flags = ["--store", address]
    elif not os.path.exists(os.path.join(data, "store")):
        print(f"seeding {n} sites (once; kept in {data})", file=sys.stderr)
        os.makedirs(data, exist_ok=True)
        subprocess.run(["cargo", "run", "--release", "--quiet", "-p", "porter-store", "--example", "seed", "--",
                        os.path.join(data, "store"), str(n), "127.0.0.1:9"], cwd=ROOT, check=True)
    port = free_port()
    porter = PORTER
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def handshake(name):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=name):
                pass

    log = open(os.path.join(data, "bench.log"), "w+")
    started = time.time()
    http_port, admin_port = free_port(), free_port()
    proc = subprocess.Popen(["taskset", "-c", "0", porter, "--data-dir", data, *store_flags, "serve", "--https", f"127.0.0.1:{port}",
                             "--http", f"127.0.0.1:{http_port}", "--admin", f"127.0.0.1:{admin_port}"],
                            env=dict(os.environ, PORTER_LOG="info"), stderr=log)

    def scrape_ms():
        """Median time of a /metrics scrape, once every site has had a request."""
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        for i in range(n):
            conn.request("GET", "/", headers={"Host": f"s{i}.scale.test"})
            conn.getresponse().read()
        conn.close()
        with open(os.path.join(data, "admin.token")) as f:
            token = f.read().strip()
        times, size = [], 0
        for _ in range(5):
            admin = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
            t = time.time()
            admin.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"})
            size = len(admin.getresponse().read())
            times.append((time.time() - t) * 1000)
            admin.close()
        return statistics.median(times), size / 1024

    def loaded():
        with open(log.name) as f:
            return "every site is loaded" in f.read()

    def timed_handshakes(count):
        times = []
        for _ in range(count):
            t = time.time()
            handshake(f"s{random.randrange(n)}.scale.test")
            times.append((time.time() - t) * 1000)
        return statistics.median(times)

    try:
        while True:
            try:
                handshake("s0.scale.test")
                break
            except OSError:
                if time.time() - started > 600 or proc.poll() is not None:
                    raise SystemExit("porter did not serve")
                time.sleep(0.01)
        first = time.time() - started
        while_loading = timed_handshakes(10) if not loaded() else float("nan")
        while not loaded():
            if time.time() - started > 600 or proc.poll() is not None:
                raise SystemExit("porter did not load its sites")
            time.sleep(0.01)
        all_loaded = time.time() - started
        rss_loaded = rss_kib([proc.pid]) / 1024
        after = timed_handshakes(50)
        # The OCSP refresher reads every certificate once the edge is loaded: its pass is done
        # well within five seconds at 100,000 certificates.
        time.sleep(max(0.0, all_loaded + 5 - (time.time() - started)))
        rss = rss_kib([proc.pid]) / 1024
        scrape, scrape_kib = scrape_ms()
    finally:
        proc.terminate()
        proc.wait()
        if etcd_proc:
            print(f"etcd's database: {etcd_db_mib(client):.0f} MiB", file=sys.stderr)
            etcd_proc.terminate()
            etcd_proc.wait()
    print("| sites | first handshake after start | every site loaded after | RSS then | RSS 5 s later "
          "| handshake, name not recently used (median): while loading | after | /metrics scrape, every site with traffic (median) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {n} | {first:.2f} s | {all_loaded:.2f} s | {rss_loaded:.0f} MiB | {rss:.0f} MiB "
          f"| {while_loading:.2f} ms | {after:.2f} ms | {scrape:.1f} ms ({scrape_kib:.0f} KiB) |")


def median(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


FIGURES = [
    ("HTTP/1.1 keep-alive req/s", "h1", "rps", True),
    ("  p50 latency ms", "h1", "p50", False),
    ("  p99 latency ms", "h1", "p99", False),
    ("  proxy CPU us/request", "h1", "cpu_us", False),
    ("HTTP/2 req/s (16x16 streams)", "h2", "rps", True),
    ("  proxy CPU us/request", "h2", "cpu_us", False),
    ("full handshakes/s (TLS 1.3)", "full", "cps", True),
    ("  proxy CPU us/connection", "full", "cpu_us", False),
    ("full handshakes/s, X25519 (bench/handshakes.rs)", "pq_x25519", "cps", True),
    ("  proxy CPU us/connection", "pq_x25519", "cpu_us", False),
    ("full handshakes/s, X25519MLKEM768", "pq_hybrid", "cps", True),
    ("  proxy CPU us/connection", "pq_hybrid", "cpu_us", False),
    ("HTTP/3 req/s (1 connection, 64 streams)", "h3", "rps", True),
    ("  proxy CPU us/request", "h3", "cpu_us", False),
    ("HTTP/3 new connections/s (1 request each, 8 clients)", "h3new", "rps", True),
    ("  proxy CPU us/connection", "h3new", "cpu_us", False),
    ("resumed handshakes/s", "resumed", "cps", True),
    ("  proxy CPU us/connection", "resumed", "cpu_us", False),
    ("64 KiB responses/s", "big", "rps", True),
    ("  throughput MiB/s", "big", "mib_s", True),
    ("  proxy CPU us/response", "big", "cpu_us", False),
    ("RSS idle MiB", "mem", "idle_mib", False),
    (f"RSS KiB per idle TLS connection ({IDLE_CONNECTIONS})", "mem", "per_conn_kib", False),
]


def print_table(names, results, figures, ratio):
    """Medians of each figure, with the ratio column: Porter to the best peer (for rates the
    highest, for CPU, latency and memory the lowest), or with --waf the WAF's cost."""
    def med(name, fig, key):
        return median([row[fig][key] for row in results[name]])

    peers = [n for n in names if n != "porter"]
    print("| figure | " + " | ".join(names) + (f" | {ratio} |" if ratio else " |"))
    print("|" + "---|" * (len(names) + 1 + (1 if ratio else 0)))
    for label, fig, key, higher_better in figures:
        values = {n: med(n, fig, key) for n in names}
        cells = " | ".join(
            "-" if values[n] != values[n] else f"{values[n]:.1f}" if values[n] >= 10 else f"{values[n]:.2f}"
            for n in names)
        line = f"| {label} | {cells} |"
        if ratio and ratio.startswith("waf_block"):
            line += f" {values['waf_block'] / values['porter']:.2f} |" if values["porter"] else " - |"
        elif ratio:
            peer_values = [values[n] for n in peers if values[n] == values[n]]
            best = (max if higher_better else min)(peer_values) if peer_values else float("nan")
            line += f" {values['porter'] / best:.2f} |" if best == best and best else " - |"
        print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", help="contestants (default porter,nginx,haproxy,caddy; with --cache "
                    "porter,nginx,varnish)")
    ap.add_argument("--scale", type=int, help="measure Porter alone with this many sites")
    ap.add_argument("--etcd", action="store_true", help="with --scale: the sites in a fresh etcd, not sled")
    ap.add_argument("--baseline", help="another porter binary, measured as contestant 'baseline' "
                    "(add it to --only) for an A/B of a change")
    ap.add_argument("--waf", action="store_true", help="Porter's WAF: off, detect and block "
                    "(contestants porter, waf_detect, waf_block) beside nginx, keep-alive only")
    ap.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                    help="environment for the baseline alone (the same binary with a feature "
                    "on, say PORTER_ACCESS_LOG=/tmp/access.log)")
    ap.add_argument("--cache", action="store_true", help="HTTP cache hits: Porter with its cache "
                    "on beside nginx proxy_cache and Varnish (1 KiB and 64 KiB; HTTP/1.1 and h2c in "
                    "cleartext, HTTP/2 over TLS)")
    ap.add_argument("--figures", default="mem,h1,h2,full,resumed,big",
                    help="which figures of the usual scenario to measure")
    ap.add_argument("--breakdown", action="store_true", help="per request, for h1 and h2 of "
                    "--figures: user and kernel time, system calls (strace) and context switches, "
                    "and the top of a perf profile, for each contestant (one round)")
    ap.add_argument("--porter", help="the Porter binary to measure (default: cargo build --release "
                    "here, target/release/porter)")
    args = ap.parse_args()
    global BASELINE, PORTER
    BASELINE = args.baseline
    BASELINE_ENV.update(pair.split("=", 1) for pair in args.baseline_env)
    if args.porter:
        PORTER = os.path.abspath(args.porter)
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if "pq" in args.figures.split(","):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "handshakes"], cwd=ROOT, check=True)
    if {"h3", "h3new"} & set(args.figures.split(",")):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "h3load"], cwd=ROOT, check=True)
    if args.scale:
        return scale(args.scale, args.etcd)
    if args.cache:
        TOOLS["varnishd"] = "varnish"
    missing = [f"{t} (apt-get install -y {p})" for t, p in TOOLS.items() if not shutil.which(t)]
    if missing:
        raise SystemExit("missing: " + ", ".join(missing))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * IDLE_CONNECTIONS + 1000:
        raise SystemExit(f"the open-files limit ({hard}) is too low for {IDLE_CONNECTIONS} connections")

    work = tempfile.mkdtemp(prefix="porter-bench-")
    os.chmod(work, 0o755)  # nginx workers run as nobody and read the 64 KiB file from here
    key, cert = os.path.join(work, "key.pem"), os.path.join(work, "cert.pem")
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"])
    with open(os.path.join(work, "64k"), "wb") as f:
        f.write(b"x" * 65536)
    for path, size in CACHED.items():
        with open(os.path.join(work, path.lstrip("/")), "wb") as f:
            f.write(b"c" * size)
    origin_log = os.path.join(work, "origin-cached.log")
    cached = " ".join(f"location = {path} {{ root {work}; add_header Cache-Control \"max-age=3600\"; "
                      f"access_log {origin_log}; }}" for path in CACHED)
    backend = free_port()
    bconf = os.path.join(work, "backend.conf")
    with open(bconf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {work}/backend.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {work}/b; proxy_temp_path {work}/p; fastcgi_temp_path {work}/f;
  uwsgi_temp_path {work}/u; scgi_temp_path {work}/s; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend}; location = / {{ return 200 "hello\\n"; }} location = /64k {{ root {work}; }}
    {cached} }} }}
""")
    # The backend gets core 1 with the load generator: the proxy alone has core 0.
    backend_proc = subprocess.Popen(["taskset", "-c", "1", "nginx", "-c", bconf, "-p", work],
                                    stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(backend)

    names = ["porter", "waf_detect", "waf_block", "nginx"] if args.waf else (
        args.only or ("porter,nginx,varnish" if args.cache else "porter,nginx,haproxy,caddy")).split(",")
    selected = ["h1", "h2"] if args.waf else args.figures.split(",")
    results = {n: [] for n in names}
    try:
        if args.breakdown:
            rows = {}
            for name in names:
                c = Contestant(name, work, cert, key, backend)
                c.start()
                try:
                    rows[name] = {f: breakdown(c, f, args.seconds) for f in ("h1", "h2") if f in selected}
                finally:
                    c.stop()
            print_breakdown(names, rows)
            return
        if args.cache:
            cache_scenario(names, args.rounds, args.seconds, work, cert, key, backend, origin_log)
        for r in range(0 if args.cache else args.rounds):
            for name in names:
                c = Contestant(name, work, cert, key, backend)
                c.start()
                try:
                    if args.waf:
                        row = {"h1": wrk(c, "/", args.seconds), "h2": h2(c, args.seconds)}
                        results[name].append(row)
                        print(f"round {r + 1} {name}: {json.dumps(row)}", file=sys.stderr)
                        continue
                    row = {}
                    if "mem" in selected:
                        row["mem"] = idle_memory(c)
                    if "h1" in selected:
                        row["h1"] = wrk(c, "/", args.seconds)
                    if "h2" in selected:
                        row["h2"] = h2(c, args.seconds)
                    if "full" in selected:
                        row["full"] = handshakes(c, args.seconds, reuse=False)
                    if "pq" in selected:
                        row["pq_x25519"] = pq_handshakes(c, args.seconds, "x25519")
                        row["pq_hybrid"] = pq_handshakes(c, args.seconds, "x25519mlkem768")
                    if "h3" in selected:
                        row["h3"] = h3load(c, args.seconds, "streams", 64)
                    if "h3new" in selected:
                        row["h3new"] = h3load(c, args.seconds, "connections", 8)
                    if "resumed" in selected:
                        row["resumed"] = handshakes(c, args.seconds, reuse=True)
                    if "big" in selected:
                        row["big"] = wrk(c, "/64k", args.seconds)
                        row["big"]["mib_s"] = row["big"]["rps"] * 64 / 1024
                finally:
                    c.stop()
                results[name].append(row)
                print(f"round {r + 1} {name}: {json.dumps(row)}", file=sys.stderr)
    finally:
        os.killpg(backend_proc.pid, signal.SIGTERM)
        backend_proc.wait()
    if args.cache:
        print(f"\n{args.rounds} interleaved rounds of {args.seconds} s per figure; medians. "
              "Proxy on core 0, load generator and origin on core 1.")
        return

    figures = [f for f in FIGURES if f[1] in selected or f[1].startswith("pq_") and "pq" in selected]
    ratio = "waf_block / porter" if args.waf else "porter / best peer" if "porter" in names and len(names) > 1 else None
    print_table(names, results, figures, ratio)
    print(f"\n{args.rounds} interleaved rounds of {args.seconds} s per figure; medians. "
          "Proxy on core 0, load generator and backend on core 1.")


if __name__ == "__main__":
    main()
