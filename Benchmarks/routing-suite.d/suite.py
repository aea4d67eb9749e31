#!/usr/bin/env python3
"""Benchmarks/routing-suite: routing quality on five workload shapes, Sluice against the peers,
in one run (see Benchmarks/README.md). Run through Benchmarks/routing-suite, which installs the
peers and builds Sluice first. Stdlib only.

For every shape, repetition and router, in rotating order: 8 fresh `sluice sim` servers (or 2
real vLLM CPU servers with --vllm), the router in front of them, the shape's client
(workload_client.py), the servers' prefix-cache counters, then everything stopped. Each cell is
the median of the repetitions; each shape's table ends with its targets, met or not.
"""
import argparse
import fcntl
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "Benchmarks", "compare.d"))
from sim_metrics import prefix_cache_totals  # noqa: E402

CACHE = os.environ.get("BENCH_CACHE", os.path.expanduser("~/.cache/sluice-bench"))
LOCK_PATH = os.environ.get("BENCH_LOCK", "/tmp/sluice-build.lock")
LOCK_WAIT = float(os.environ.get("BENCH_LOCK_WAIT", "300"))
NCPU = os.cpu_count() or 1
PROXY_CPU, LOAD_CPU = "0", ("1" if NCPU > 1 else "0")
SIM_PORTS = [19901 + i for i in range(8)]
VLLM_PORTS = [18101, 18102]
ROUTER_PORT = 19950
ADAPTERS = ["a1", "a2", "a3", "a4"]
VLLM_ADAPTERS = ["a1", "a2", "a3"]  # what ../shared/vllm-cpu builds
PY = sys.executable

# name, label
ROUTERS = [
    ("rr", "round robin (nginx)"),
    ("sglang", "sglang-router cache_aware"),
    ("vllmr", "vllm-router cache_aware"),
    ("weighted", "Sluice weighted (old default)"),
    ("sluice", "Sluice cost model (default)"),
    ("sluice-t200", "Sluice cost model, telemetry.interval 200ms"),
    ("sluice-noflow", "Sluice cost model, flow_control off"),
]
PEERS = ["rr", "sglang", "vllmr"]

SHAPES = {
    "1": "steady prefix-heavy",
    "2": "bursty closed loop",
    "3": "open loop (Poisson)",
    "4": "short chats + RAG",
    "5": "LoRA, 4 adapters, max-loras 2",
}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Procs:
    """What this run started, each in its own process group; stopped by group id."""

    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, cmd, cpu=None, env=None):
        full = (["taskset", "-c", cpu] if cpu is not None else []) + cmd
        logf = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(full, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             start_new_session=True, cwd=self.work)
        p.name = name
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []


def get(port, method, path, body=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers={"content-type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_until(check, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, http.client.HTTPException) as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout} s ({last})")


def status(name):
    try:
        with open(os.path.join(CACHE, "status", name)) as f:
            s = f.read().strip()
    except OSError:
        return False, "not installed (run Benchmarks/routing-suite without --no-install)"
    return (True, s[3:]) if s.startswith("ok") else (False, s[5:])


class BuildLock:
    """Holds the shared build lock while measuring (other engineers' builds would distort it)."""

    def __init__(self, what, enabled=True):
        self.what, self.enabled = what, enabled

    def __enter__(self):
        self.held = False
        if not self.enabled:
            return self
        self.f = open(LOCK_PATH, "a")
        t = time.monotonic()
        while True:
            try:
                fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.held = True
                break
            except BlockingIOError:
                if time.monotonic() - t > LOCK_WAIT:
                    log(f"{LOCK_PATH} still held after {LOCK_WAIT:.0f} s: measuring {self.what} without it")
                    break
                time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        if self.enabled:
            if self.held:
                fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()


# ---------------------------------------------------------------- servers and routers

def sim_flags(shape):
    if shape == "2":
        return ["--kv-tokens", "16384", "--max-model-len", "8192"]
    flags = ["--max-model-len", "32768"]
    if shape == "5":
        for a in ADAPTERS:
            flags += ["--lora", a]
        flags += ["--max-loras", "2"]
    return flags


def start_backends(args, procs, shape):
    if args.vllm:
        # Real vLLM CPU servers, small KV cache (ctl.sh waits for /health).
        env = dict(os.environ, KV_BYTES=args.vllm_kv, MAX_LEN="2048", MAX_LORAS="2",
                   LORAS=" ".join(f"{a}=/opt/vllm-cpu/models/lora-{a}" for a in VLLM_ADAPTERS) if shape == "5" else "a1=/opt/vllm-cpu/models/lora-a1")
        for port in VLLM_PORTS:
            r = subprocess.run(["taskset", "-c", LOAD_CPU, os.path.join(args.vllm_dir, "ctl.sh"), "start", str(port)],
                               env=env, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError(f"vLLM on {port}: {r.stdout[-300:]} {r.stderr[-300:]}")
        return VLLM_PORTS
    for i, port in enumerate(SIM_PORTS):
        procs.start(f"sim{i}", [args.sluice, "sim", "--port", str(port), "--model", "tiny-llama", "--seed", str(i + 1)]
                    + sim_flags(shape), cpu=LOAD_CPU)
    for port in SIM_PORTS:
        wait_until(lambda: get(port, "GET", "/health")[0] == 200, 20, f"sim on {port}")
    return SIM_PORTS


def stop_backends(args):
    if args.vllm:
        for port in VLLM_PORTS:
            subprocess.run([os.path.join(args.vllm_dir, "ctl.sh"), "stop", str(port)], capture_output=True, timeout=60)


def start_router(args, procs, name, ports, shape, work):
    upstreams = [f"http://127.0.0.1:{p}" for p in ports]
    if name in ("sluice", "weighted", "sluice-t200", "sluice-noflow"):
        cfg = os.path.join(work, f"{name}.yaml")
        models = ""
        if shape == "5":
            models = "models:\n  - { name: tiny-llama, pool: sims }\n" + "".join(
                f"  - {{ name: {a}, pool: sims, adapter: {a} }}\n" for a in (VLLM_ADAPTERS if args.vllm else ADAPTERS))
        access = os.path.join(work, f"{name}-access.log")
        with open(cfg, "w") as f:
            f.write(f"""listen: [{{ address: "127.0.0.1:{ROUTER_PORT}" }}]
workers: 1
timeouts: {{ drain_delay: 0s }}
telemetry: {{ interval: {"200ms" if name == "sluice-t200" else args.telemetry} }}
{f'logging: {{ access_log: "{access}" }}' if args.access_log else ''}
{'flow_control: { enabled: false }' if name == "sluice-noflow" else ''}
pools:
  - name: sims
    routing: {"weighted" if name == "weighted" else "default"}
    endpoints: [{", ".join(f'"{u}"' for u in upstreams)}]
{models}""")
        if os.path.exists(access):
            os.remove(access)
        return procs.start(name, [args.sluice, "serve", "--config", cfg], cpu=PROXY_CPU)
    if name == "rr":
        ok, why = status("nginx")
        if not ok:
            raise RuntimeError(why)
        d = os.path.join(work, "nginx")
        os.makedirs(d, exist_ok=True)
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {d}/nginx.pid; error_log stderr error;
events {{ worker_connections 4096; }}
http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d};
  upstream up {{ {"".join(f"server 127.0.0.1:{p};" for p in ports)} keepalive 1024; }}
  server {{ listen 127.0.0.1:{ROUTER_PORT} reuseport; client_max_body_size 16m; client_body_buffer_size 512k;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 600s; }} }} }}
""")
        return procs.start(name, ["nginx", "-c", conf, "-p", d], cpu=PROXY_CPU)
    if name == "sglang":
        ok, why = status("sglang")
        if not ok:
            raise RuntimeError(why)
        return procs.start(name, [os.path.join(CACHE, "venv-sglang", "bin", "sglang-router"), "launch", "--host", "127.0.0.1",
                                  "--port", str(ROUTER_PORT), "--prometheus-port", str(ROUTER_PORT + 10000), "--policy",
                                  "cache_aware", "--log-level", "error", "--max-concurrent-requests", "-1", "--worker-urls"]
                           + upstreams, cpu=PROXY_CPU)
    if name == "vllmr":
        ok, why = status("vllmr")
        if not ok:
            raise RuntimeError(why)
        return procs.start(name, [os.path.join(CACHE, "venv-vllmr", "bin", "vllm-router"), "--host", "127.0.0.1",
                                  "--port", str(ROUTER_PORT), "--prometheus-port", str(ROUTER_PORT + 10000), "--policy",
                                  "cache_aware", "--log-level", "error", "--max-concurrent-requests", "100000",
                                  "--worker-urls"] + upstreams, cpu=PROXY_CPU)
    raise ValueError(name)


def cpu_seconds(procs, prefix):
    """utime + stime of this run's processes whose name starts with `prefix` (the sims)."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in procs.procs:
        if not p.name.startswith(prefix):
            continue
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / hz
        except (OSError, IndexError, ValueError):
            pass
    return total


def counters(ports):
    hits = queries = 0.0
    for port in ports:
        h, q = prefix_cache_totals(get(port, "GET", "/metrics")[1].decode(errors="replace"))
        hits += h
        queries += q
    return hits, queries


# ---------------------------------------------------------------- workloads

def client_args(args, shape, rate=None):
    q = args.quick
    if args.vllm:
        # Two real CPU servers with 4,096-token KV caches: issue 24's small setup (~500-token
        # prompts, 6 clients), slower by far than the sims.
        d = str(args.duration or (15 if q else 30))
        small = ["--users", "6", "--system-tokens", "500", "--output-tokens", "32"]
        if shape == "1":
            return ["--shape", "steady", "--duration", d] + small
        if shape == "2":
            return ["--shape", "burst", "--groups", "16", "--chats-per-group", "6", "--turns", "4"] + small
        if shape == "5":
            return ["--shape", "lora", "--duration", d, "--adapters", ",".join(VLLM_ADAPTERS)] + small
    d = str(args.duration or (3 if q else 20))
    if shape == "1":
        return ["--shape", "steady", "--users", "32" if q else "48", "--duration", d]
    if shape == "2":
        return ["--shape", "burst", "--users", "48", "--groups", "16", "--chats-per-group", "8", "--system-tokens", "2000",
                "--turns", "6", "--output-tokens", "32"]
    if shape == "3":
        window = args.window or (2.5 if q else 12)
        chats = max(1, round(rate * window))
        return ["--shape", "poisson", "--rate", f"{rate:g}", "--chats", str(chats), "--drain", "30", "--timeout", "30"]
    if shape == "4":
        return ["--shape", "mixed", "--users", "32", "--duration", d, "--docs", "8", "--doc-tokens", "3000",
                "--short-tokens", "150", "--rag-share", "0.5"]
    if shape == "5":
        return ["--shape", "lora", "--users", "32", "--duration", d, "--adapters", ",".join(ADAPTERS),
                "--system-tokens", "2000"]
    raise ValueError(shape)


def prediction_error(work, name, records):
    """Median |predicted − observed| TTFT (ms) from Sluice's access log, when its lines carry both
    `ttft_predicted_ms` and `ttft_ms`; None (and why) otherwise."""
    path = os.path.join(work, f"{name}-access.log")
    errs, lines, with_pred = [], 0, 0
    try:
        with open(path) as f:
            for line in f:
                lines += 1
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                p, t = o.get("ttft_predicted_ms"), o.get("ttft_ms")
                if p is not None:
                    with_pred += 1
                if p is not None and t is not None:
                    errs.append(abs(p - t))
    except OSError:
        return None, "no access log"
    if not errs:
        return None, "access log has no ttft_predicted_ms" if lines else "access log empty"
    return statistics.median(errs), None


def run_one(args, shape, router, work, rate=None):
    procs = Procs(work)
    try:
        ports = start_backends(args, procs, shape)
        p = start_router(args, procs, router, ports, shape, work)
        probe = json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})

        def ready():
            if p.poll() is not None:
                raise RuntimeError(f"{router} exited ({p.returncode}); see {work}/{router}.log")
            return get(ROUTER_PORT, "POST", "/v1/chat/completions", probe, timeout=10)[0] == 200
        wait_until(ready, 60, router)
        time.sleep(0.3)  # a few telemetry scrapes for the routers that read them
        h0, q0 = counters(ports)
        c0 = cpu_seconds(procs, "sim")
        cmd = ["taskset", "-c", LOAD_CPU, PY, os.path.join(HERE, "workload_client.py"), "--target", f"127.0.0.1:{ROUTER_PORT}"]
        out = subprocess.run(cmd + client_args(args, shape, rate), capture_output=True, text=True, timeout=900)
        try:
            r = json.loads(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"client failed: {(out.stdout + out.stderr)[-400:]}")
        h1, q1 = counters(ports)
        r["hit_rate"] = (h1 - h0) / max(q1 - q0, 1)
        # The servers' CPU per 1,000 output tokens: on this machine the 8 sims share a core with
        # the client, so a router that makes them run more (smaller) steps leaves the client
        # less CPU; a diagnostic for closed-loop tokens/s, not a target.
        r["sim_cpu_ms_per_ktok"] = (cpu_seconds(procs, "sim") - c0) * 1e6 / max(r["output_tokens"], 1) if not args.vllm else None
        r.pop("ttfts", None)
        if router == "sluice" and args.access_log:
            time.sleep(0.2)  # the access log's writer thread
            r["pred_err_ms"], r["pred_why"] = prediction_error(work, router, None)
        return r
    finally:
        procs.stop_all()
        stop_backends(args)


def med(rs, key):
    vs = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vs) if vs else None


def measure(args, shape, routers, work, rate=None):
    """Every router `reps` times, rotating the order each round; {router: [results]}."""
    results = {name: [] for name in routers}
    errors = {}
    for rep in range(args.reps):
        order = routers[rep % len(routers):] + routers[:rep % len(routers)]
        for name in order:
            if name in errors:
                continue
            try:
                r = run_one(args, shape, name, work, rate)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as e:
                errors[name] = str(e)[:300]
                log(f"shape {shape} {name}: not run: {errors[name]}")
                continue
            results[name].append(r)
            log(f"shape {shape}{'' if rate is None else f' @{rate:g}/s'} rep {rep + 1} {name:9} tok/s {r['tokens_per_s']:8.1f} "
                f"TTFT p90 {fmt(r['ttft_p90'])} ms hit {r['hit_rate']:.3f} req {r['requests']} err {r['errors']} "
                f"sim CPU {fmt(r.get('sim_cpu_ms_per_ktok'), 0)} ms/ktok"
                + (f" pred err {fmt(r.get('pred_err_ms'))} ms" if name == "sluice" else ""))
    return results, errors


def fmt(v, nd=1):
    return "-" if v is None else ("∞" if v == float("inf") else f"{v:.{nd}f}")


def table(shape_title, routers, results, errors, note=""):
    rr = {k: med(results.get("rr", []), k) for k in ("tokens_per_s", "ttft_p90")}
    lines = [f"### {shape_title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| router | output tok/s | ×RR | TTFT p50 ms | TTFT p90 ms | ×RR p90 | hit rate | server CPU ms / 1k tok | requests / errors (sum) | runs |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name in routers:
        label = dict(ROUTERS)[name]
        rs = results.get(name, [])
        if not rs:
            lines.append(f"| {label} | not run: {errors.get(name, '?')} | | | | | | | | |")
            continue
        t, p50, p90, hit = med(rs, "tokens_per_s"), med(rs, "ttft_p50"), med(rs, "ttft_p90"), med(rs, "hit_rate")
        lines.append(f"| {label} | {fmt(t)} | {fmt(t / rr['tokens_per_s'], 2) if rr['tokens_per_s'] else '-'} | {fmt(p50)} | "
                     f"{fmt(p90)} | {fmt(p90 / rr['ttft_p90'], 3) if rr['ttft_p90'] and p90 is not None else '-'} | "
                     f"{fmt(hit, 3)} | {fmt(med(rs, 'sim_cpu_ms_per_ktok'), 0)} | {sum(r['requests'] for r in rs)} / {sum(r['errors'] for r in rs)} | {len(rs)} |")
    return lines


def verdict(shape, results, rate=None, who="sluice"):
    """The issue's targets for the new profile, met or not."""
    s = results.get(who, [])
    if not s:
        return [] if who != "sluice" else ["- cost model not run."]
    t, p90 = med(s, "tokens_per_s"), med(s, "ttft_p90")
    peers = {n: (med(results[n], "tokens_per_s"), med(results[n], "ttft_p90")) for n in PEERS if results.get(n)}
    rr = peers.get("rr")
    out = []
    best_t = max((v[0] for v in peers.values() if v[0] is not None), default=None)
    p90s = [v[1] for v in peers.values() if v[1] is not None]
    best_p = min(p90s) if p90s else None
    tag = "" if rate is None else f" at {rate:g} chats/s"

    def ok(c):
        return "met" if c else "**not met**"
    if best_t:
        out.append(f"- output tokens/s{tag} ≥ best peer's ({fmt(best_t)}): {fmt(t)} = {t / best_t:.2f}× — {ok(t >= best_t)}")
    if rr and rr[0]:
        need = 4.0 if shape == "1" else 1.1
        out.append(f"- output tokens/s{tag} ≥ {need:g}× round robin's: {t / rr[0]:.2f}× — {ok(t >= need * rr[0])}")
    if best_p is not None and p90 is not None:
        out.append(f"- TTFT p90{tag} ≤ best peer's ({fmt(best_p)} ms): {fmt(p90)} ms — {ok(p90 <= best_p)}")
    if rr and rr[1] is not None and p90 is not None:
        out.append(f"- TTFT p90{tag} ≤ round robin's ({fmt(rr[1])} ms): {ok(p90 <= rr[1])}")
    e = med(s, "pred_err_ms")
    why = next((r.get("pred_why") for r in s if r.get("pred_why")), "run with --access-log")
    if who != "sluice":
        return out
    out.append(f"- cost model's median absolute TTFT prediction error: {fmt(e)} ms" if e is not None
               else f"- cost model's TTFT prediction error: not measured ({why})")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", default=os.path.join(ROOT, ".build", "release", "sluice"))
    ap.add_argument("--quick", action="store_true", help="shorter runs (< 10 minutes)")
    ap.add_argument("--reps", type=int, default=3, help="runs per router and shape (medians)")
    ap.add_argument("--shapes", default="1,2,3,4,5")
    ap.add_argument("--routers", default=",".join(n for n, _ in ROUTERS if n not in ("sluice-t200", "sluice-noflow")),
                    help="of rr, sglang, vllmr, weighted, sluice, sluice-t200 (the cost model scraping every 200 ms), "
                         "sluice-noflow (the cost model with flow control off)")
    ap.add_argument("--duration", type=float, help="seconds per closed-loop run (quick 3, full 20)")
    ap.add_argument("--window", type=float, help="open loop: seconds of arrivals per rate (quick 2.5, full 12)")
    ap.add_argument("--loads", default="0.5,0.8,0.95", help="open loop: fractions of capacity")
    ap.add_argument("--capacity", type=float, help="open loop: chats/s the pool sustains (default: measured, below)")
    ap.add_argument("--vllm", action="store_true", help="2 real vLLM CPU servers (../shared/vllm-cpu) instead of 8 sims; shapes 1, 2, 5")
    ap.add_argument("--vllm-dir", default=os.path.join(os.path.dirname(ROOT), "shared", "vllm-cpu"))
    ap.add_argument("--vllm-kv", default="8M", help="--vllm: KV cache bytes per server (8M = 4,096 tokens)")
    ap.add_argument("--no-lock", action="store_true", help="measure without holding the shared build lock")
    ap.add_argument("--telemetry", default="50ms", help="Sluice's telemetry.interval (its default: 50ms)")
    ap.add_argument("--access-log", action="store_true",
                    help="Sluice writes an access log (for the prediction error: needs ttft_predicted_ms in its lines)")
    ap.add_argument("--out", help="results file (default Benchmarks/results/<date>-routing-suite[-quick].md)")
    args = ap.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    if args.vllm:
        shapes = [s for s in shapes if s in ("1", "2", "5")]
    routers = [r for r in args.routers.split(",") if r]
    work = tempfile.mkdtemp(prefix="sluice-routing-suite-")
    started = time.time()
    log(f"work directory {work}")
    backend = "2 real vLLM CPU servers" if args.vllm else "8 `sluice sim` servers"
    sections = []
    capacity_note = None
    all_results = {}
    for shape in shapes:
        title = f"Shape {shape}: {SHAPES[shape]}"
        if shape != "3":
            with BuildLock(title, not args.no_lock):
                results, errors = measure(args, shape, routers, work)
            all_results[shape] = results
            sections.append((title, results, errors, None, shape))
            continue
        # Open loop at fractions of capacity: the chats/s round robin completes in the closed-loop
        # steady shape (its saturated throughput at that concurrency), unless given.
        cap = args.capacity
        if cap is None:
            rr = all_results.get("1", {}).get("rr")
            if rr:
                cap = med(rr, "tokens_per_s") / (4 * 24)
                capacity_note = f"capacity {cap:.1f} chats/s = round robin's closed-loop throughput in shape 1 (tokens/s ÷ 4 turns ÷ 24 tokens)"
            else:
                cap = 32.0
                capacity_note = "capacity 32 chats/s (round robin's measured saturation, Benchmarks/README.md; shape 1 not run)"
        else:
            capacity_note = f"capacity {cap:g} chats/s (given)"
        for load in [float(x) for x in args.loads.split(",") if x]:
            rate = round(cap * load, 1)
            with BuildLock(f"{title} {load:g}", not args.no_lock):
                results, errors = measure(args, shape, routers, work, rate)
            sections.append((f"{title} at {load * 100:g} % of capacity ({rate:g} chats/s)", results, errors, rate, shape))
    mode = "quick" if args.quick else "full"
    lines = [f"# Routing suite ({mode}{', real vLLM' if args.vllm else ''}), {time.strftime('%Y-%m-%d')}", "",
             f"`Benchmarks/routing-suite{' --quick' if args.quick else ''}{' --vllm' if args.vllm else ''} --reps {args.reps}`"
             f" over {backend}, fresh for every run; routers on CPU {PROXY_CPU}, servers and client on CPU {LOAD_CPU}. "
             f"Each cell is the median of {args.reps} runs (rotating order). Hit rate: the servers' own "
             "`vllm:prefix_cache_hits / queries`. Sluice build: " + time.ctime(os.path.getmtime(args.sluice)) + ".", ""]
    if capacity_note:
        lines += [f"Open loop: {capacity_note}.", ""]
    for title, results, errors, rate, shape in sections:
        lines += table(title, routers, results, errors) + [""] + verdict(shape, results, rate) + [""]
        extra = verdict(shape, results, rate, "sluice-t200")
        if extra:
            lines += ["With the cost model scraping every 200 ms:"] + [l for l in extra if "prediction error" not in l] + [""]
    lines.append(f"Wall time {(time.time() - started) / 60:.1f} min.")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = args.out or os.path.join(ROOT, "Benchmarks", "results",
                                   f"{time.strftime('%Y-%m-%d')}-routing-suite{'-vllm' if args.vllm else ''}{'-quick' if args.quick else ''}.md")
    with open(out, "w") as f:
        f.write(text)
    log(f"written {out}")


if __name__ == "__main__":
    main()
