#!/usr/bin/env python3
"""Benchmarks/compare: Sluice against the field, side by side in one run (see Benchmarks/README.md).

Run through Benchmarks/compare (which installs the peers first). Stdlib only.
Every number printed is compared with numbers measured in the same invocation: the direct run
(no proxy) is the physical limit, and each proxy is also given as a multiple of the best proxy.
"""
import argparse
import atexit
import datetime
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import http.client

from sim_metrics import prefix_cache_totals  # beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("BENCH_CACHE", os.path.expanduser("~/.cache/sluice-bench"))
# BENCH_LOCK exists for smoke tests of the script itself; real runs must use the shared build lock.
LOCK_PATH = os.environ.get("BENCH_LOCK", "/tmp/sluice-build.lock")
PY = sys.executable
HZ = os.sysconf("SC_CLK_TCK")
MASTER_KEY = os.environ.get("LITELLM_MASTER_KEY") or "sk-sluice-bench"
NCPU = os.cpu_count() or 1
PROXY_CPU = "0"
LOAD_CPU = "1" if NCPU > 1 else "0"

UP_JSON, UP_SSE = 19001, 19002
# Behind UP_JSON: what it asks for the fixed answer once it has read a large body.
UP_ANSWER = 19009
PORTS = {"sluice": 19101, "nginx": 19102, "haproxy": 19103, "envoy": 19104, "sglang-router": 19105,
         "vllm-router": 19106, "litellm": 19107}
PEERS = ["sluice", "nginx", "haproxy", "envoy", "sglang-router", "vllm-router", "litellm"]
# Cleartext HTTP/2 (prior knowledge) for the open-streams section over HTTP/2: Sluice and Envoy
# take it on their one port; nginx (before 1.25.1) and HAProxy need a listener of its own, here
# the peer's port + 50. The others are tried on their port and reported as they answer.
H2_PORT_OFFSET = {"nginx": 50, "haproxy": 50}


def h2_port(name):
    return PORTS[name] + H2_PORT_OFFSET.get(name, 0)

PROFILES = {
    "quick": dict(reps=1, duration=4, warmup=1, json_conns=[8, 64], stream_conns=[16, 128], stream_events=16,
                  stream_interval_ms=20, hold_streams=2000, h2_streams=2000, hold_timeout=40, big_runs=[(20, 0), (150, 0), (150, 4)], big_duration=4,
                  route_duration=20, route_users=32, guidellm_seconds=15),
    "full": dict(reps=5, duration=6, warmup=1, json_conns=[8, 32, 256], stream_conns=[16, 64, 256], stream_events=16,
                 stream_interval_ms=20, hold_streams=9500, h2_streams=10000, hold_timeout=120, big_runs=[(20, 0), (150, 0), (150, 4)], big_duration=6,
                 route_duration=60, route_users=48, guidellm_seconds=60),
}

BODY_JSON = ('{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"tiny","choices":[{"index":0,'
             '"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],'
             '"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}')
SMALL_POST = '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8,"temperature":0}'


# A load point's first run measures every peer once; the direct run and the proxies whose CPU per
# request came within this multiple of the best are then measured again, P["reps"] times in all
# (in rotating order), and the tables give each one's medians. The others are 1.5x or more off the
# best: one run places them, repeating them would only make the run longer.
CONTENDER_WITHIN = 1.5
# Counts that add up over repetitions rather than being one run's measurement.
SUMMED = ("non2xx", "errors", "requests", "streams", "events")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Unavailable(Exception):
    """A peer that could not be installed or run; the message goes into the tables."""


# ---------------------------------------------------------------- processes

class Procs:
    """Everything this run started, each in its own process group, killed by group id at exit."""

    def __init__(self):
        self.procs = []
        atexit.register(self.kill_all)

    def start(self, name, cmd, cpu=None, env=None, logfile=None, stdin=None, stdout=None):
        full = (["taskset", "-c", cpu] if cpu is not None else []) + cmd
        logf = open(logfile or os.devnull, "ab")
        p = subprocess.Popen(full, stdout=stdout if stdout is not None else logf,
                             stderr=subprocess.STDOUT if stdout is None else logf,
                             stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             env=env, start_new_session=True, cwd=WORK)
        p.bench_name = name
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGKILL):
        if p is None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if p in self.procs:
            self.procs.remove(p)

    def kill_all(self):
        for p in list(self.procs):
            self.stop(p)


def tree(pid):
    """pid and all its descendants (multi-process proxies are measured as a whole)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rfind(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out, todo = [], [pid]
    while todo:
        x = todo.pop()
        out.append(x)
        todo.extend(children.get(x, []))
    return out


def cpu_seconds(pids):
    """CPU time the processes (every thread of each) have used so far, in seconds. Read from
    /proc/PID/task/TID/schedstat (nanoseconds on CPU) rather than utime + stime (100 Hz ticks):
    a streaming row uses ~15-130 ms of proxy CPU a second, so ticks moved it by several percent.
    Threads that exit in between are not counted (the proxies keep theirs); a process without
    schedstat falls back to its ticks."""
    total = 0.0
    for pid in pids:
        try:
            ns = 0
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    ns += int(f.read().split()[0])
            total += ns / 1e9
            continue
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            fields = s[s.rfind(")") + 2:].split()
            total += (int(fields[11]) + int(fields[12])) / HZ  # utime, stime (fields 14, 15)
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class BuildLock:
    """Holds the shared build lock while measuring so other engineers' builds don't distort numbers.
    Python opens files close-on-exec, so processes started meanwhile do not inherit the lock."""

    def __init__(self, section):
        self.section = section

    def __enter__(self):
        self.f = open(LOCK_PATH, "a")
        t = time.monotonic()
        self.held = False
        # Bounded wait: a lock leaked by a stuck process must not stall the benchmark forever.
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.held = True
                break
            except BlockingIOError:
                if time.monotonic() - t > LOCK_WAIT:
                    break
                time.sleep(0.5)
        self.start = time.monotonic()
        self.load = open("/proc/loadavg").read().split()[0]
        if not self.held:
            log(f"{LOCK_PATH} still held by another process after {LOCK_WAIT:.0f} s: measuring without it "
                f"(load average {self.load}); the results say so")
        elif self.start - t > 1:
            log(f"waited {self.start - t:.0f} s for {LOCK_PATH}")
        return self

    def __exit__(self, *exc):
        held = time.monotonic() - self.start
        if self.held:
            fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()
        LOCK_TIMES.append((self.section, held, self.held, self.load))
        log(f"{'lock held' if self.held else 'measured WITHOUT the lock'} {held:.0f} s for {self.section}")


LOCK_WAIT = float(os.environ.get("BENCH_LOCK_WAIT", "300"))
LOCK_TIMES = []
GUIDELLM_REPORT = []


# ---------------------------------------------------------------- HTTP probes

def http_request(port, method, path, body=None, headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"content-type": "application/json", "authorization": f"Bearer {MASTER_KEY}"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(port, proc, body, timeout, what):
    """Until a real request through `port` answers 200 (routers answer 503 until workers are up)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"{what} exited with status {proc.returncode}: {tail(proc)}")
        try:
            status, data = http_request(port, "POST", "/v1/chat/completions", body, timeout=10)
            if status == 200:
                return
            last = f"HTTP {status} {data[:120]!r}"
        except (OSError, http.client.HTTPException) as e:
            last = str(e)
        time.sleep(0.3)
    raise Unavailable(f"{what} not ready after {timeout} s ({last}): {tail(proc)}")


def tail(proc, n=300):
    if proc is None:
        return ""
    path = os.path.join(WORK, f"{proc.bench_name}.log")
    try:
        with open(path, "rb") as f:
            data = f.read()[-n:]
        return data.decode(errors="replace").replace("\n", " ").strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- peers

def status(name):
    try:
        with open(os.path.join(CACHE, "status", name)) as f:
            s = f.read().strip()
    except OSError:
        return False, "not installed (run Benchmarks/compare without --no-install)"
    if s.startswith("ok"):
        return True, s[3:]
    return False, s[5:]


def venv_bin(venv, exe):
    return os.path.join(CACHE, f"venv-{venv}", "bin", exe)


def start_peer(name, port, upstreams, kind):
    """Starts peer `name` on `port` in front of `upstreams` ([port, ...] on 127.0.0.1); returns the
    process whose tree is measured. kind: 'json', 'sse' or 'sim' (timeouts for long streams)."""
    d = os.path.join(WORK, f"{name}-{kind}")
    os.makedirs(d, exist_ok=True)
    logname = f"{name}-{kind}"
    logfile = os.path.join(WORK, f"{logname}.log")
    if name == "sluice":
        cmd = [SLUICE, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "1", "--drain-delay", "0s"]
        for u in upstreams:
            cmd += ["--endpoint", f"http://127.0.0.1:{u}"]
        p = PROCS.start(logname, cmd, cpu=PROXY_CPU, logfile=logfile)
    elif name == "sluice-rr":
        cfg = os.path.join(d, "sluice.yaml")
        with open(cfg, "w") as f:
            f.write(f'listen:\n  - address: "127.0.0.1:{port}"\nworkers: 1\npools:\n  - name: default\n    endpoints:\n')
            for u in upstreams:
                f.write(f"      - http://127.0.0.1:{u}\n")
            f.write("    routing:\n      profile: round_robin\n")
        # Older builds take `routing: round_robin` (a string); use whichever form this one accepts.
        if subprocess.run([SLUICE, "validate", cfg], capture_output=True).returncode != 0:
            with open(cfg) as f:
                text = f.read().replace("    routing:\n      profile: round_robin\n", "    routing: round_robin\n")
            with open(cfg, "w") as f:
                f.write(text)
        p = PROCS.start(logname, [SLUICE, "serve", "--config", cfg], cpu=PROXY_CPU, logfile=logfile)
    elif name == "nginx":
        ok, why = status("nginx")
        if not ok:
            raise Unavailable(why)
        servers = "".join(f"server 127.0.0.1:{u};" for u in upstreams)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid; error_log stderr error;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; multi_accept on; }}
http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};
  upstream up {{ {servers} keepalive 1024; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{port} reuseport backlog=4096; keepalive_requests 1000000;
    {f"listen 127.0.0.1:{port + H2_PORT_OFFSET['nginx']} http2 backlog=4096;" if kind == "sse" else ""}
    http2 on;
    client_max_body_size 16m; client_body_buffer_size 512k;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 600s; }} }} }}
""")
        if nginx_version() < (1, 25, 1):
            with open(conf) as f:
                text = f.read().replace("    http2 on;\n", "")
            with open(conf, "w") as f:
                f.write(text)
        p = PROCS.start(logname, ["nginx", "-c", conf, "-p", d], cpu=PROXY_CPU, logfile=logfile)
    elif name == "haproxy":
        ok, why = status("haproxy")
        if not ok:
            raise Unavailable(why)
        conf = os.path.join(d, "haproxy.cfg")
        servers = "".join(f"  server s{i} 127.0.0.1:{u}\n" for i, u in enumerate(upstreams))
        with open(conf, "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn 9900
  tune.bufsize 32768
defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 600s
  timeout server 600s
  timeout http-request 60s
{"  option http-no-delay" + chr(10) if kind != "json" else ""}frontend f
  bind 127.0.0.1:{port}
  default_backend b
{f"frontend f2{chr(10)}  bind 127.0.0.1:{port + H2_PORT_OFFSET['haproxy']} proto h2{chr(10)}  default_backend b{chr(10)}" if kind == "sse" else ""}backend b
  balance roundrobin
{servers}""")
        p = PROCS.start(logname, ["haproxy", "-db", "-f", conf], cpu=PROXY_CPU, logfile=logfile)
    elif name == "envoy":
        ok, why = status("envoy")
        if not ok:
            raise Unavailable(why)
        conf = os.path.join(d, "envoy.yaml")
        eps = "".join(f"""
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {u} }}""" for u in upstreams)
        with open(conf, "w") as f:
            f.write(f"""static_resources:
  listeners:
  - name: l
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          codec_type: AUTO
          stream_idle_timeout: 600s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: up, timeout: 0s }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 5s
    lb_policy: ROUND_ROBIN
    circuit_breakers:
      thresholds:
      - {{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }}
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:{eps}
""")
        p = PROCS.start(logname, [venv_bin("envoy", "envoy"), "-c", conf, "--concurrency", "1", "--log-level", "error",
                                  "--disable-hot-restart"], cpu=PROXY_CPU, logfile=logfile)
    elif name == "sglang-router":
        ok, why = status("sglang")
        if not ok:
            raise Unavailable(why)
        cmd = [venv_bin("sglang", "sglang-router"), "launch", "--host", "127.0.0.1", "--port", str(port),
               "--prometheus-port", str(port + 10000), "--policy", "cache_aware", "--log-level", "error",
               "--max-concurrent-requests", "-1", "--worker-urls"] + [f"http://127.0.0.1:{u}" for u in upstreams]
        p = PROCS.start(logname, cmd, cpu=PROXY_CPU, logfile=logfile)
    elif name == "vllm-router":
        ok, why = status("vllmr")
        if not ok:
            raise Unavailable(why)
        policy = "cache_aware" if kind == "sim" else "round_robin"
        cmd = [venv_bin("vllmr", "vllm-router"), "--host", "127.0.0.1", "--port", str(port),
               "--prometheus-port", str(port + 10000), "--policy", policy, "--log-level", "error",
               "--max-concurrent-requests", "100000", "--worker-urls"] + [f"http://127.0.0.1:{u}" for u in upstreams]
        p = PROCS.start(logname, cmd, cpu=PROXY_CPU, logfile=logfile)
    elif name == "litellm":
        ok, why = status("litellm")
        if not ok:
            raise Unavailable(why)
        conf = os.path.join(d, "litellm.yaml")
        model = "tiny-llama" if kind == "sim" else "tiny"
        with open(conf, "w") as f:
            f.write("model_list:\n")
            for u in upstreams:
                f.write(f"""  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{u}/v1
      api_key: sk-none
""")
            f.write("""litellm_settings:
  turn_off_message_logging: true
  drop_params: true
  telemetry: false
general_settings:
  disable_spend_logs: true
""")
        env = dict(os.environ, LITELLM_MASTER_KEY=MASTER_KEY, LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False",
                   LITELLM_LOCAL_MODEL_COST_MAP="True", NO_DOCS="True")
        p = PROCS.start(logname, [venv_bin("litellm", "litellm"), "--config", conf, "--host", "127.0.0.1",
                                  "--port", str(port), "--num_workers", "1"], cpu=PROXY_CPU, env=env, logfile=logfile)
    else:
        raise ValueError(name)
    p.bench_name = logname
    return p


_nginx_version = None


def nginx_version():
    global _nginx_version
    if _nginx_version is None:
        out = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
        m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
        _nginx_version = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    return _nginx_version


def start_all(kind, upstreams, body, peers):
    """Starts every peer (outside the lock: start-up costs are not measured); returns
    {name: (proc, None) or (None, why)}."""
    out = {}
    for name in peers:
        try:
            p = start_peer(name, PORTS[name], upstreams, kind)
            out[name] = (p, None)
        except Unavailable as e:
            out[name] = (None, str(e))
        except OSError as e:
            out[name] = (None, f"could not start: {e}")
    for name, (p, why) in list(out.items()):
        if p is None:
            continue
        try:
            wait_ready(PORTS[name], p, body, 120 if name == "litellm" else 40, name)
        except Unavailable as e:
            PROCS.stop(p)
            out[name] = (None, str(e)[:300])
    for name, (p, why) in out.items():
        if why:
            log(f"{name}: unavailable: {why}")
    return out


def stop_all(started):
    for p, _ in started.values():
        PROCS.stop(p)


# ---------------------------------------------------------------- load generators

def wrk_script(body_expr, name, think_ms=0):
    """A wrk script POSTing `body_expr`; with `think_ms`, each connection pauses that long after a
    response before its next request (wrk's delay())."""
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(f"""wrk.method = "POST"
wrk.body = {body_expr}
{f"function delay() return {think_ms} end" if think_ms else ""}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {MASTER_KEY}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), e.status,
    e.connect + e.read + e.write + e.timeout))
end
""")
    return path


def run_wrk(port, conns, seconds, script, pids):
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    base = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{conns}", "--timeout", "20s", "-s", script, url]
    subprocess.run(base[:-1] + [f"-d{WARMUP}s", url], capture_output=True, timeout=WARMUP + 60)
    pids = tree(pids) if pids else []
    before = cpu_seconds(pids)
    r = subprocess.run(base[:-1] + [f"-d{seconds}s", url], capture_output=True, text=True, timeout=seconds + 60)
    after = cpu_seconds(pids)
    m = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)", r.stdout)
    if not m:
        return {"error": (r.stdout + r.stderr).strip()[-200:]}
    req, dur, p50, p99, p999, non2xx, errs = (int(x) for x in m.groups())
    res = {"rps": req / (dur / 1e6), "p50": p50 / 1000, "p99": p99 / 1000, "p999": p999 / 1000,
           "requests": req, "non2xx": non2xx, "errors": errs}
    if pids:
        res["cpu_us"] = (after - before) * 1e6 / max(1, req - non2xx)
    return res


def run_stream(port, conns, seconds, pids):
    pids = tree(pids) if pids else []
    client = [PY, os.path.join(HERE, "stream_client.py"), "--target", f"127.0.0.1:{port}", "--key", MASTER_KEY,
              "--conns", str(conns), "--events", str(P["stream_events"])]
    subprocess.run(["taskset", "-c", LOAD_CPU] + client + ["--duration", str(WARMUP)], capture_output=True,
                   timeout=WARMUP + 60)
    before = cpu_seconds(pids)
    r = subprocess.run(["taskset", "-c", LOAD_CPU] + client + ["--duration", str(seconds)], capture_output=True,
                       text=True, timeout=seconds + 90)
    after = cpu_seconds(pids)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": (r.stdout + r.stderr).strip()[-200:]}
    res["sps"] = res["streams"] / res["seconds"]
    res["eps"] = res["events"] / res["seconds"]
    if pids and res["streams"]:
        res["cpu_us"] = (after - before) * 1e6 / res["streams"]
    return res


def run_hold(port, n, pid, h2=False):
    """Opens n streams through `port` (one HTTP/1.1 connection each, or 100 per HTTP/2 connection),
    returns {established, seconds, rss_kb} (RSS of pid's tree while all are open)."""
    if h2:
        py = venv_bin("h2client", "python")  # install.sh: a virtualenv with `h2`
        client = [py if os.path.exists(py) else PY, os.path.join(HERE, "h2_hold_client.py"), "--target", f"127.0.0.1:{port}",
                  "--key", MASTER_KEY, "--streams", str(n), "--establish-timeout", str(P["hold_timeout"]),
                  "--duration", "300"]
    else:
        client = [PY, os.path.join(HERE, "stream_client.py"), "--mode", "hold", "--target", f"127.0.0.1:{port}",
                  "--key", MASTER_KEY, "--conns", str(n), "--establish-timeout", str(P["hold_timeout"]),
                  "--duration", "300"]
    c = PROCS.start("hold-client", ["taskset", "-c", LOAD_CPU] + client, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE)
    line = c.stdout.readline()
    res = {}
    try:
        res = json.loads(line)
    except ValueError:
        res = {"error": f"client: {line[:200]!r}"}
    if pid:
        res["rss_kb"] = rss_kb(tree(pid))
    try:
        c.stdin.close()
    except OSError:
        pass
    try:
        c.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    PROCS.stop(c)
    time.sleep(1.5)
    return res


# ---------------------------------------------------------------- formatting

def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def best(values):
    v = [x for x in values if x is not None and x > 0]
    return min(v) if v else None


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def combine(samples):
    """One load point's result for one peer from its repetitions: the median of every measured
    value over the runs that worked, counts summed, the CPU range kept ("cpu_min"/"cpu_max") and
    how many runs there were and how many failed. A peer whose every run failed keeps the first
    failure."""
    ok = [r for r in samples if "error" not in r and "why" not in r]
    if not ok:
        return samples[0]
    res = {}
    for key in ok[0]:
        vals = [r[key] for r in ok if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if len(vals) != len(ok):
            res[key] = ok[0][key]
        elif key in SUMMED:
            res[key] = sum(vals)
        else:
            res[key] = median(vals)
    cpus = [r["cpu_us"] for r in ok if r.get("cpu_us") is not None]
    if cpus:
        res["cpu_min"], res["cpu_max"] = min(cpus), max(cpus)
    res["runs"] = len(samples)
    res["failed_runs"] = len(samples) - len(ok)
    return res


def measure_point(what, peers, started, run):
    """Measures one load point: `run(name)` for "direct" and every started peer (one after the
    other, the order of `peers`), then the direct run and the contenders again until each has
    P["reps"] runs, rotating the order each round so no proxy always runs right after the same
    one; then any peer still at one run that is within reach of the best median, the same way.
    Returns {name: combined result} ("why" for peers that are not running)."""
    samples, results = {}, {}
    for name in ["direct"] + peers:
        p, why = started[name] if name != "direct" else (True, None)
        if p is None:
            results[name] = {"why": why}
            continue
        samples[name] = [run(name)]
        log(f"{what} {name}: {brief(samples[name][-1])}")

    def cpu(name):
        """The peer's CPU per request so far: the median of its runs that worked."""
        v = [r["cpu_us"] for r in samples[name] if r.get("cpu_us") is not None and "error" not in r]
        return median(v) if v else None

    repeated = set()
    while True:
        # Contenders: within CONTENDER_WITHIN of the best so far. A peer left at one run whose
        # run comes within that of the best median (the first round's best may have been a
        # lucky run) is brought up to P["reps"] runs too.
        cpus = {n: cpu(n) for n in samples if n != "direct"}
        b = best(cpus.values())
        again = [n for n, c in cpus.items() if b and c and c <= CONTENDER_WITHIN * b and n not in repeated]
        if not again or P["reps"] <= 1:
            break
        if not repeated:
            again = ["direct"] + again
        repeated.update(again)
        for rep in range(1, P["reps"]):
            k = rep % len(again)
            for name in again[k:] + again[:k]:
                samples[name].append(run(name))
                log(f"{what} {name} (run {rep + 1}/{P['reps']}): {brief(samples[name][-1])}")
    for name in ["direct"] + peers:
        if name in samples:
            results[name] = combine(samples[name])
    return results


def brief(r):
    if "error" in r:
        return f"failed: {r['error']}"
    rate = f"{r['rps']:.0f} req/s" if "rps" in r else f"{r.get('sps', 0):.0f} streams/s"
    cpu = f", cpu {r['cpu_us']:.1f} us" if r.get("cpu_us") is not None else ""
    return f"{rate}, p50 {r.get('p50') or 0:.2f} ms{cpu}"


def cpu_cell(r, nd):
    """A proxy's median CPU per request, with the range when it was measured more than once."""
    if r.get("cpu_us") is None:
        return "-"
    if r.get("runs", 1) > 1 and "cpu_min" in r:
        return f"{fmt(r['cpu_us'], nd)} ({fmt(r['cpu_min'], nd)}–{fmt(r['cpu_max'], nd)})"
    return fmt(r["cpu_us"], nd)


def errors_cell(r, count):
    parts = [str(count)] if count else []
    if r.get("failed_runs"):
        parts.append(f"{r['failed_runs']} of {r['runs']} runs failed")
    return "; ".join(parts)


# ---------------------------------------------------------------- sections

def section_overhead(peers):
    """Section 1: small non-streaming POSTs (wrk) and streaming responses (per-event latency)."""
    rows_json, rows_sse = [], []
    small = wrk_script(json.dumps(SMALL_POST), "small.lua")
    # JSON phase
    started = start_all("json", [UP_JSON], SMALL_POST, peers)
    with BuildLock("1a proxy overhead, JSON"):
        for conns in P["json_conns"]:
            results = measure_point(f"1a c={conns}", peers, started, lambda name: run_wrk(
                UP_JSON if name == "direct" else PORTS[name], conns, P["duration"], small,
                None if name == "direct" else started[name][0].pid))
            rows_json += overhead_rows(conns, results)
    # Large prompts reuse the JSON-phase processes (section 3).
    big = section_large_prompts(peers, started)
    stop_all(started)
    # SSE phase
    sse_probe = '{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"stream":true}'
    started = start_all("sse", [UP_SSE], sse_probe, peers)
    with BuildLock("1b proxy overhead, streaming"):
        for conns in P["stream_conns"]:
            results = measure_point(f"1b c={conns}", peers, started, lambda name: run_stream(
                UP_SSE if name == "direct" else PORTS[name], conns, P["duration"],
                None if name == "direct" else started[name][0].pid))
            rows_sse += stream_rows(conns, results)
    hold = section_hold(peers, started)
    hold_h2 = section_hold(peers, started, h2=True)
    stop_all(started)
    return rows_json, rows_sse, big, hold, hold_h2


def overhead_rows(conns, results):
    d = results["direct"]
    bcpu = best(results[n].get("cpu_us") for n in results if n != "direct")
    brate = max([results[n].get("rps") or 0 for n in results if n != "direct"] or [0])
    rows = []
    for name, r in results.items():
        if "why" in r:
            rows.append([name, conns, f"not run: {r['why']}"] + [""] * 8)
            continue
        if "error" in r:
            rows.append([name, conns, f"failed: {r['error']}"] + [""] * 8)
            continue
        errs = r.get("non2xx", 0) + r.get("errors", 0)
        rate = r.get("rps")
        rows.append([
            name, conns, fmt(rate),
            f"{rate / d['rps']:.2f}" if d.get("rps") else "-",
            f"{rate / brate:.2f}" if brate and name != "direct" else "-",
            f"{fmt(r['p50'], 2)} / {fmt(r['p99'], 2)} / {fmt(r['p999'], 2)}",
            fmt(r["p50"] - d["p50"], 2) if name != "direct" and "p50" in d else "-",
            cpu_cell(r, 1) if name != "direct" else "-",
            f"{r['cpu_us'] / bcpu:.2f}" if name != "direct" and r.get("cpu_us") and bcpu else "-",
            errors_cell(r, errs),
        ])
    return rows


def stream_rows(conns, results):
    d = results["direct"]
    bcpu = best(results[n].get("cpu_us") for n in results if n != "direct")
    rows = []
    for name, r in results.items():
        if "why" in r:
            rows.append([name, conns, f"not run: {r['why']}"] + [""] * 7)
            continue
        if "error" in r or r.get("p50") is None:
            rows.append([name, conns, f"failed: {r.get('error', 'no events')}"] + [""] * 7)
            continue
        rows.append([
            name, conns, fmt(r["sps"]), fmt(r["eps"]),
            f"{fmt(r['p50'], 2)} / {fmt(r['p99'], 2)} / {fmt(r['p999'], 2)}",
            f"{fmt(r['p50'] - d['p50'], 2)} / {fmt(r['p99'] - d['p99'], 2)}" if name != "direct" and d.get("p50") is not None else "-",
            f"{r['sps'] / d['sps']:.2f}" if d.get("sps") else "-",
            cpu_cell(r, 0) if name != "direct" else "-",
            f"{r['cpu_us'] / bcpu:.2f}" if name != "direct" and r.get("cpu_us") and bcpu else "-",
            errors_cell(r, r.get("errors", 0)),
        ])
    return rows


def section_large_prompts(peers, started):
    """Section 3: 220 KB chat prompts at 20 and 150 connections, through the JSON-phase peers."""
    body_path = os.path.join(WORK, "big.json")
    filler = ("The quick brown fox jumps over the lazy dog. " * 5000)[:220 * 1024]
    with open(body_path, "w") as f:
        json.dump({"model": "tiny", "messages": [{"role": "system", "content": filler},
                                                 {"role": "user", "content": "Summarize."}], "max_tokens": 8}, f)
    rows = []
    with BuildLock("3 large prompts"):
        for conns, think in P["big_runs"]:
            script = wrk_script(f'io.open("{body_path}"):read("*a")', f"big-{think}.lua", think)
            label = f"{conns} + {think} ms think" if think else conns
            results = measure_point(f"3 c={label}", peers, started, lambda name: run_wrk(
                UP_JSON if name == "direct" else PORTS[name], conns, P["big_duration"], script,
                None if name == "direct" else started[name][0].pid))
            d = results["direct"]
            bcpu = best(results[n].get("cpu_us") for n in results if n != "direct")
            for name, r in results.items():
                if "why" in r or "error" in r:
                    rows.append([name, label, f"not run: {r.get('why') or r.get('error')}"] + [""] * 6)
                    continue
                errs = r.get("non2xx", 0) + r.get("errors", 0)
                rows.append([name, label, fmt(r["rps"]), f"{fmt(r['p50'], 2)} / {fmt(r['p99'], 2)}",
                             f"{fmt(r['p50'] - d['p50'], 2)} / {fmt(r['p99'] - d['p99'], 2)}" if name != "direct" else "-",
                             f"{r['rps'] / d['rps']:.2f}" if d.get("rps") else "-",
                             cpu_cell(r, 0) if name != "direct" else "-",
                             f"{r['cpu_us'] / bcpu:.2f}" if name != "direct" and r.get("cpu_us") and bcpu else "-",
                             errors_cell(r, errs)])
    return rows


def section_hold(peers, started, h2=False):
    """Section 2: RSS of each proxy with N concurrent open SSE streams (2b: over HTTP/2, with a
    direct HTTP/1.1 run to the upstream as the client-side check)."""
    n = P["h2_streams"] if h2 else P["hold_streams"]
    label = "2b" if h2 else "2"
    results = {}
    with BuildLock("2b open streams over HTTP/2" if h2 else "2 open streams"):
        if not h2:
            results["direct"] = run_hold(UP_SSE, n, None)
            log(f"2 direct: {results['direct']}")
        for name in peers:
            p, why = started[name]
            if p is None:
                results[name] = {"why": why}
                continue
            idle = rss_kb(tree(p.pid))
            r = run_hold(h2_port(name) if h2 else PORTS[name], n, p.pid, h2=h2)
            if h2 and r.get("established", 0) == 0 and "error" not in r:
                r["error"] = "no stream established over cleartext HTTP/2 (prior knowledge)"
            r["idle_kb"] = idle
            results[name] = r
            log(f"{label} {name}: {r}")
    per = {k: (r["rss_kb"] - r["idle_kb"]) / max(1, r.get("established", 0))
           for k, r in results.items() if "rss_kb" in r and r.get("established")}
    brss = best(r["rss_kb"] for k, r in results.items() if k != "direct" and r.get("rss_kb") and r.get("established") == n)
    rows = []
    for name, r in results.items():
        if "why" in r:
            rows.append([name, f"not run: {r['why']}"] + [""] * 5)
            continue
        if "error" in r:
            rows.append([name, f"failed: {r['error']}"] + [""] * 5)
            continue
        ended = f" ({r['ended']:,} ended early)" if r.get("ended") else ""
        rows.append([name, f"{r.get('established', 0):,} / {n:,}{ended}", fmt(r.get("seconds"), 1),
                     fmt(r["idle_kb"] / 1024, 1) if "idle_kb" in r else "-",
                     fmt(r["rss_kb"] / 1024, 1) if "rss_kb" in r else "-",
                     fmt(per.get(name), 1) if name in per else "-",
                     f"{r['rss_kb'] / brss:.2f}" if brss and r.get("rss_kb") and r.get("established") == n else "-"])
    return rows


def sim_available():
    try:
        out = subprocess.run([SLUICE, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if "sim --port" not in out.stdout + out.stderr:
        return False, "sluice sim not available"
    # Newer sims cap prompts at --max-model-len (default 2048 tokens); the workload needs ~4k.
    for extra in (["--max-model-len", "32768"], []):
        p = PROCS.start("sim-probe", [SLUICE, "sim", "--port", "19799", "--model", "tiny-llama"] + extra,
                        logfile=os.path.join(WORK, "sim-probe.log"))
        try:
            for _ in range(50):
                if p.poll() is not None:
                    break
                try:
                    if http_request(19799, "GET", "/metrics")[0] == 200:
                        SIM_EXTRA[:] = extra
                        return True, ""
                except (OSError, http.client.HTTPException):
                    time.sleep(0.1)
        finally:
            PROCS.stop(p)
    return False, "sluice sim not available"


def scrape(ports):
    hits = queries = 0.0
    for port in ports:
        try:
            _, data = http_request(port, "GET", "/metrics")
        except (OSError, http.client.HTTPException):
            continue
        h, q = prefix_cache_totals(data.decode(errors="replace"))
        hits += h
        queries += q
    return hits, queries


SIM_PORTS = [19701 + i for i in range(8)]
SIM_EXTRA = []


def start_sims():
    sims = []
    for i, port in enumerate(SIM_PORTS):
        sims.append(PROCS.start(f"sim{i}", [SLUICE, "sim", "--port", str(port), "--model", "tiny-llama",
                                           "--seed", str(i + 1)] + SIM_EXTRA, cpu=LOAD_CPU,
                                logfile=os.path.join(WORK, f"sim{i}.log")))
    for port in SIM_PORTS:
        for _ in range(100):
            try:
                if http_request(port, "GET", "/health")[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
    return sims


def section_routing(peers):
    """Section 4: the shared-prefix workload over 8 simulated vLLM servers."""
    ok, why = sim_available()
    routers = [("sluice", "sluice", "default profile (prefix 10, home 1, queue 1, kv 1, lora 1)"),
               ("sluice-rr", "sluice", "round_robin"),
               ("sglang-router", "sglang-router", "cache_aware"),
               ("vllm-router", "vllm-router", "cache_aware")]
    routers = [r for r in routers if r[1] in peers]
    if not ok:
        return [[name, policy, f"skipped: {why}"] + [""] * 6 for name, _, policy in routers], None
    probe = '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":1}'
    results = {}
    ports = {"sluice": PORTS["sluice"], "sluice-rr": PORTS["sluice"] + 50, "sglang-router": PORTS["sglang-router"],
             "vllm-router": PORTS["vllm-router"]}
    with BuildLock("4 routing quality"):
        for name, _, policy in routers:
            sims = start_sims()
            try:
                p = start_peer(name, ports[name], SIM_PORTS, "sim")
                wait_ready(ports[name], p, probe, 40, name)
            except Unavailable as e:
                results[name] = {"why": str(e)[:300]}
                for s in sims:
                    PROCS.stop(s)
                continue
            h0, q0 = scrape(SIM_PORTS)
            r = subprocess.run(["taskset", "-c", LOAD_CPU, PY, os.path.join(HERE, "routing_client.py"),
                                "--target", f"127.0.0.1:{ports[name]}", "--duration", str(P["route_duration"]),
                                "--users", str(P["route_users"]), "--key", MASTER_KEY],
                               capture_output=True, text=True, timeout=P["route_duration"] + 120)
            h1, q1 = scrape(SIM_PORTS)
            try:
                res = json.loads(r.stdout.strip().splitlines()[-1])
                res["hit"] = (h1 - h0) / (q1 - q0) if q1 > q0 else None
            except (IndexError, ValueError):
                res = {"error": (r.stdout + r.stderr).strip()[-200:]}
            results[name] = res
            log(f"4 {name}: {res}")
            PROCS.stop(p)
            for s in sims:
                PROCS.stop(s)
    rr = results.get("sluice-rr", {})
    btok = max([r.get("tokens_per_s") or 0 for r in results.values()] or [0])
    rows = []
    for name, _, policy in routers:
        r = results.get(name, {})
        if "why" in r or "error" in r:
            rows.append([name, policy, f"not run: {r.get('why') or r.get('error')}"] + [""] * 6)
            continue
        if not r.get("requests"):
            rows.append([name, policy, f"failed: {r.get('errors')} errors, first: {r.get('first_error')}"] + [""] * 6)
            continue
        rows.append([name, policy, fmt(r["tokens_per_s"]),
                     f"{r['tokens_per_s'] / rr['tokens_per_s']:.2f}" if rr.get("tokens_per_s") else "-",
                     f"{r['tokens_per_s'] / btok:.2f}" if btok else "-",
                     f"{fmt(r['ttft_p50'], 1)} / {fmt(r['ttft_p90'], 1)}",
                     f"{r['ttft_p90'] / rr['ttft_p90']:.3f}" if rr.get("ttft_p90") and r.get("ttft_p90") else "-",
                     f"{r['hit'] * 100:.1f} %" if r.get("hit") is not None else "-",
                     f"{r['requests']} / {r['errors']}"])
    return rows, results


def section_guidellm():
    """guidellm against Sluice in front of the 8 simulated servers; its report is kept."""
    ok, why = status("guidellm")
    if not ok:
        return f"not run: guidellm: {why}"
    ok, why = sim_available()
    if not ok:
        return f"skipped: {why} (guidellm needs a model server behind Sluice)"
    sims = start_sims()
    p = start_peer("sluice", PORTS["sluice"], SIM_PORTS, "sim")
    out_json = os.path.join(WORK, "guidellm.json")
    try:
        wait_ready(PORTS["sluice"], p, '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"max_tokens":1}', 40, "sluice")
        data = os.path.join(WORK, "guidellm-prompts.jsonl")
        with open(data, "w") as f:
            for i in range(200):
                f.write(json.dumps({"prompt": f"Question {i}: " + "tell me about prefix caching and routing. " * 20}) + "\n")
        # guidellm 0.8's CLI (kind=...,key=value); a JSON file of prompts needs no tokenizer download.
        cmd = [venv_bin("guidellm", "guidellm"), "run",
               "--backend", f"kind=openai_http,target=http://127.0.0.1:{PORTS['sluice']},model=tiny-llama,"
                            "request_format=/v1/chat/completions",
               "--profile", "kind=concurrent,streams=16",
               "--constraint", f"kind=max_duration,seconds={P['guidellm_seconds']}",
               "--data", f"kind=json_file,path={data}",
               "--output", f"kind=json,path={out_json}", "--output", "kind=console", "--disable-progress"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        with BuildLock("guidellm"):
            r = subprocess.run(["taskset", "-c", LOAD_CPU] + cmd, capture_output=True, text=True,
                               timeout=P["guidellm_seconds"] + 240, env=env, cwd=WORK)
        report = r.stdout + r.stderr
        GUIDELLM_REPORT.append(report)
        if r.returncode != 0:
            lines = [l for l in report.splitlines() if l.strip()]
            return f"guidellm failed (exit {r.returncode}): " + " ".join(lines[-3:])[:400]
        # The console report's tables; the last copy is the final one.
        lines = report.splitlines()
        starts = [i for i, l in enumerate(lines) if "Request Latency Statistics" in l]
        if starts:
            i = starts[-1]
            keep = lines[i:i + 10]
            j = [k for k, l in enumerate(lines) if "Server Throughput Statistics" in l]
            keep += [""] + (lines[j[-1]:j[-1] + 10] if j else [])
        else:
            keep = lines[-30:]
        return ("guidellm " + status("guidellm")[1] + ", concurrent profile with 16 streams, "
                f"{P['guidellm_seconds']} s, 200 chat prompts of ~900 characters; full console report in the "
                "`-guidellm.txt` file beside this one.\n\n```\n" + "\n".join(keep) + "\n```")
    except (Unavailable, subprocess.TimeoutExpired) as e:
        return f"guidellm not run: {e}"[:400]
    finally:
        PROCS.stop(p)
        for s in sims:
            PROCS.stop(s)


# ---------------------------------------------------------------- main

def versions():
    v = {}
    try:
        v["sluice"] = subprocess.run([SLUICE, "--version"], capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except OSError:
        v["sluice"] = "?"
    try:
        v["sluice"] += " (binary built " + SLUICE_BUILT + ", repo at git " + subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() + ")"
    except OSError:
        pass
    for name, key in [("nginx", "nginx"), ("haproxy", "haproxy"), ("envoy", "envoy"), ("sglang-router", "sglang"),
                      ("vllm-router", "vllmr"), ("litellm", "litellm"), ("guidellm", "guidellm"), ("wrk", "wrk")]:
        ok, s = status(key)
        v[name] = s if ok else f"unavailable: {s}"
    v["python (clients, SSE upstream)"] = platform.python_version()
    return v


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{NCPU} CPUs ({model}), {platform.system()} {platform.release()}"


def main():
    global P, WORK, PROCS, SLUICE, WARMUP, SLUICE_BUILT
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    ap.add_argument("--sections", default="1,2,3,4,g", help="comma-separated subset of 1,2,3,4,g (2 and 3 need 1's processes, so they run with it)")
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build", "release", "sluice"))
    ap.add_argument("--out", default=os.path.join(ROOT, "Benchmarks", "results"))
    ap.add_argument("--reps", type=int, help="runs per proxy and load point in sections 1 and 3 for the direct run "
                    f"and the proxies within {CONTENDER_WITHIN}x of the best CPU (default: 1 with --quick, 5 in the full run)")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full"
    P = dict(PROFILES[mode])
    if args.reps:
        P["reps"] = max(1, args.reps)
    WARMUP = P["warmup"]
    SLUICE = os.path.abspath(args.sluice)
    peers = [p for p in args.peers.split(",") if p in PEERS]
    sections = set(args.sections.split(","))
    WORK = tempfile.mkdtemp(prefix="sluice-compare.")
    PROCS = Procs()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    signal.signal(signal.SIGINT, lambda *a: sys.exit(1))
    started_at = time.monotonic()
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    log(f"{mode} run, work dir {WORK}; proxies on CPU {PROXY_CPU}, load generators and upstreams on CPU {LOAD_CPU}")
    if not os.access(SLUICE, os.X_OK):
        sys.exit(f"no sluice binary at {SLUICE} (build with: swift build -c release --product sluice)")
    # A private copy: a rebuild during the run must not mix two binaries in one set of tables.
    shutil.copy2(SLUICE, os.path.join(WORK, "sluice"))
    SLUICE_BUILT = datetime.datetime.fromtimestamp(os.path.getmtime(SLUICE)).strftime("%Y-%m-%d %H:%M")
    SLUICE = os.path.join(WORK, "sluice")

    # The fixed-response upstreams, for the whole run.
    updir = os.path.join(WORK, "upstream")
    os.makedirs(updir)
    with open(os.path.join(updir, "nginx.conf"), "w") as f:
        f.write(f"""worker_processes 1; daemon off; pid {updir}/nginx.pid; error_log stderr error;
worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off; client_body_temp_path {updir}; proxy_temp_path {updir};
  upstream answer {{ server 127.0.0.1:{UP_ANSWER}; keepalive 1024; keepalive_requests 1000000; }}
  server {{ listen 127.0.0.1:{UP_JSON} reuseport backlog=4096; keepalive_requests 1000000;
    client_max_body_size 16m; client_body_buffer_size 512k;
    location / {{ default_type application/json;
      # A body of 1,000 bytes or more is read whole before the answer, as a model server reads
      # a prompt: answering before it has arrived would have proxies that stream bodies
      # through (nginx) cut the connection under the rest of the upload (errors, latency
      # spikes). Small ones come with the head; they are answered at once.
      if ($http_content_length ~ "^[0-9]{{4,}}$") {{ rewrite ^ /read-whole-body last; }}
      return 200 '{BODY_JSON}'; }}
    location = /read-whole-body {{ internal; proxy_pass http://answer/;
      proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass_request_body off;
      proxy_set_header Content-Length ""; }} }}
  server {{ listen 127.0.0.1:{UP_ANSWER} backlog=4096; keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{BODY_JSON}'; }} }} }}
""")
    PROCS.start("upstream-json", ["nginx", "-c", os.path.join(updir, "nginx.conf"), "-p", updir], cpu=LOAD_CPU,
                logfile=os.path.join(WORK, "upstream-json.log"))
    PROCS.start("upstream-sse", [PY, os.path.join(HERE, "sse_upstream.py"), "--port", str(UP_SSE),
                                 "--interval-ms", str(P["stream_interval_ms"])], cpu=LOAD_CPU,
                logfile=os.path.join(WORK, "upstream-sse.log"))
    for port in (UP_JSON, UP_SSE):
        for _ in range(100):
            try:
                http_request(port, "GET", "/")
                break
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)

    out = {}
    if sections & {"1", "2", "3"}:
        out["json"], out["sse"], out["big"], out["hold"], out["hold_h2"] = section_overhead(peers)
    if "4" in sections:
        out["route"], _ = section_routing(peers + ["sluice-rr"])
    if "g" in sections:
        out["guidellm"] = section_guidellm()
    elapsed = time.monotonic() - started_at

    p = P
    doc = [f"# Sluice against the field — {mode} run, {date}", "",
           f"Machine: {machine()}. Proxies pinned to CPU {PROXY_CPU}; load generators and upstreams to CPU {LOAD_CPU}. "
           f"One worker/thread per proxy, keep-alive to upstreams, access logs off. Run took {elapsed / 60:.1f} min; "
           "Build lock (other engineers' builds paused while measuring): " + "; ".join(
               f"{s}: {'held' if h else 'NOT held (leaked by another process; measured anyway)'} {t:.0f} s, load average at start {l}"
               for s, t, h, l in LOCK_TIMES) + ".", "",
           "Only ratios within this run mean anything (shared, noisy machine). `×direct` = fraction of the no-proxy run, "
           "`×best` = multiple of the best proxy in the same row group (1.00 is the best)." + (
               f" Sections 1 and 3: every proxy runs once per load point; the direct run and the proxies whose CPU per "
               f"request came within {CONTENDER_WITHIN}× of the best then run again, {p['reps']} times in all, in rotating "
               f"order (and so does any proxy whose one run comes within {CONTENDER_WITHIN}× of the best median), and "
               "their cells are the medians of those runs, with the CPU range (min–max) in brackets."
               if p["reps"] > 1 else ""), "",
           "## Versions", "", table(["tool", "version"], list(versions().items())), ""]
    if "json" in out:
        doc += [f"## 1a. Proxy overhead: small chat POST (wrk, {p['duration']} s per run, latency in ms)", "",
                table(["run", "conns", "req/s", "×direct", "×best req/s", "p50 / p99 / p99.9", "added p50",
                       "proxy CPU µs/req", "CPU ×best", "errors"], out["json"]), "",
                f"## 1b. Proxy overhead: streaming ({p['stream_events']} SSE events per response, one every "
                f"{p['stream_interval_ms']} ms; per-event latency = arrival − upstream send time, ms)", "",
                table(["run", "streams", "responses/s", "events/s", "event p50 / p99 / p99.9", "added p50 / p99",
                       "×direct responses/s", "proxy CPU µs/response", "CPU ×best", "errors"], out["sse"]), "",
                f"## 2. Memory with {p['hold_streams']:,} concurrent open SSE streams", "",
                ("(One HTTP/1.1 connection per stream. 10,000 is not reachable this way here: a proxy holds 2 "
                 "descriptors per stream and this sandbox's hard RLIMIT_NOFILE is 20,000 and cannot be raised; "
                 "section 2b reaches 10,000 over HTTP/2" + ("; --quick uses 2,000 to stay under 10 minutes" if mode == "quick" else "") + ".)"),
                "",
                table(["run", "streams open", "time to open (s)", "RSS idle (MB)", "RSS with streams (MB)",
                       "KB per stream", "RSS ×best"], out["hold"]), "",
                f"## 2b. Memory with {p['h2_streams']:,} concurrent open SSE streams over HTTP/2", "",
                ("Clients multiplex 100 streams per cleartext HTTP/2 connection (prior knowledge; nginx and HAProxy "
                 "on an HTTP/2 listener of their own), so the proxy holds ~1 descriptor per stream (its upstream "
                 "connection) and 10,000 fit under the descriptor limit. Upstream is HTTP/1.1 as before. "
                 "The same processes as section 2, right after it: \"RSS idle\" is what each kept from section 2's "
                 "streams (allocators keep freed memory), so compare \"RSS with streams\"."),
                "",
                table(["run", "streams open", "time to open (s)", "RSS idle (MB)", "RSS with streams (MB)",
                       "KB per stream", "RSS ×best"], out["hold_h2"]), "",
                f"## 3. Large prompts: 220 KB chat bodies (wrk, {p['big_duration']} s per run, latency in ms)", "",
                table(["run", "conns", "req/s", "p50 / p99", "added p50 / p99", "×direct req/s", "proxy CPU µs/req",
                       "CPU ×best", "errors"], out["big"]), ""]
    if "route" in out:
        doc += [f"## 4. Routing quality: shared-prefix workload over 8 `sluice sim` servers ({p['route_duration']} s, "
                f"{p['route_users']} users, 16 groups × 3,000-token system prompts, 4-turn chats)", "",
                table(["router", "policy", "output tok/s", "×round robin", "×best", "TTFT p50 / p90 (ms)",
                       "TTFT p90 ×round robin", "prefix-cache hit rate", "requests / errors"], out["route"]), ""]
    if "guidellm" in out:
        doc += ["## guidellm against Sluice (8 simulated servers behind it)", "", out["guidellm"], ""]
    text = "\n".join(doc)
    print("\n" + text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{datetime.date.today().isoformat()}-{mode}.md")
    with open(path, "w") as f:
        f.write(text)
    if GUIDELLM_REPORT:
        with open(path[:-3] + "-guidellm.txt", "w") as f:
            f.write(GUIDELLM_REPORT[-1])
    log(f"wrote {path}; logs in {WORK}")


if __name__ == "__main__":
    main()
