#!/usr/bin/env python3
"""Routing quality (issue 4), in one run: the shared-prefix workload of Benchmarks/compare.d/
routing_client.py over 8 `sluice sim` servers (restarted cold for every variant), through

  default    Sluice's default profile (prefix affinity, queue, KV, LoRA, load guard, rendezvous)
  rr         Sluice with routing: round_robin         (the baseline)
  ll         Sluice with routing: least_loaded
  3x         three Sluice replicas with the default profile that share nothing; each chat goes
             to one of them at random

Reported per variant: output tokens/s, TTFT p50/p90 (ms), the servers' own prefix-cache hit rate
(vllm:prefix_cache_hits_total / queries_total) and errors; then the ratios the issue sets targets
for (default vs rr: ≥ 2× tokens/s, ≤ 1/20 TTFT p90; 3x hit rate ≥ 95 % of default's).

Usage: Benchmarks/routing-quality.py [--duration S] [--users N] [--out FILE.md]
Stdlib only; needs the release binary (swift build -c release) and taskset.
"""
import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, ".build", "release", "sluice")
CLIENT = os.path.join(ROOT, "Benchmarks", "compare.d", "routing_client.py")
SIM_PORTS = [19811 + i for i in range(8)]
GATEWAY_PORTS = [19831, 19832, 19833]
NCPU = os.cpu_count() or 1
PROXY_CPU, LOAD_CPU = "0", ("1" if NCPU > 1 else "0")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, args, cpu, log):
        p = subprocess.Popen(["taskset", "-c", cpu] + args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read()


def wait_ready(port, path="/health", tries=200):
    for _ in range(tries):
        try:
            if get(port, path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not become ready")


def cache_counters():
    hits = queries = 0.0
    for port in SIM_PORTS:
        _, data = get(port, "/metrics")
        for line in data.decode().splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name == "vllm:prefix_cache_hits_total":
                hits += float(line.rsplit(" ", 1)[1])
            elif name == "vllm:prefix_cache_queries_total":
                queries += float(line.rsplit(" ", 1)[1])
    return hits, queries


def run_variant(name, policy, replicas, args, work):
    procs = Procs()
    log = open(os.path.join(work, f"{name}.log"), "w")
    try:
        for i, port in enumerate(SIM_PORTS):
            # The workload's chats grow past the simulator's default 2,048-token context.
            procs.start([SLUICE, "sim", "--port", str(port), "--model", "tiny-llama", "--seed", str(i + 1),
                         "--max-model-len", "32768"], LOAD_CPU, log)
        for port in SIM_PORTS:
            wait_ready(port)
        targets = []
        for r in range(replicas):
            port = GATEWAY_PORTS[r]
            cfg = os.path.join(work, f"{name}-{r}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""listen: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{port + 100}" }}
workers: 1
timeouts: {{ drain_delay: 0s }}
telemetry: {{ interval: 50ms }}
pools:
  - name: sims
    routing: {policy}
    endpoints: [{", ".join(f'"http://127.0.0.1:{p}"' for p in SIM_PORTS)}]
""")
            procs.start([SLUICE, "serve", "--config", cfg], PROXY_CPU, log)
            wait_ready(port + 100, "/healthz")
            targets.append(f"127.0.0.1:{port}")
        time.sleep(0.5)  # a few telemetry scrapes
        h0, q0 = cache_counters()
        out = subprocess.run(["taskset", "-c", LOAD_CPU, sys.executable, CLIENT, "--target", ",".join(targets),
                              "--users", str(args.users), "--duration", str(args.duration)],
                             capture_output=True, text=True, timeout=args.duration + 120)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if r.get("first_error"):
            print(f"{name}: first error: {r['first_error']}", flush=True)
        h1, q1 = cache_counters()
        r["hit_rate"] = (h1 - h0) / max(q1 - q0, 1)
        return r
    finally:
        procs.stop_all()
        log.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--out")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-routing-")
    variants = [("default", "default", 1), ("rr", "round_robin", 1), ("ll", "least_loaded", 1), ("3x", "default", 3)]
    results = {}
    for name, policy, replicas in variants:
        results[name] = run_variant(name, policy, replicas, args, work)
        r = results[name]
        print(f"{name:8} tokens/s {r['tokens_per_s']:8.1f}  TTFT p50 {r['ttft_p50'] or 0:8.1f} ms  p90 {r['ttft_p90'] or 0:8.1f} ms  "
              f"hit rate {r['hit_rate']:.3f}  requests {r['requests']}  errors {r['errors']}", flush=True)
    d, rr, three = results["default"], results["rr"], results["3x"]
    lines = [
        f"# Routing quality, {time.strftime('%Y-%m-%d')}",
        "",
        f"`Benchmarks/routing-quality.py --duration {args.duration:g} --users {args.users}`: the shared-prefix workload "
        f"(16 groups of ~3,000-token system prompts, 4-turn chats, streamed, 24 output tokens) over 8 `sluice sim` "
        f"servers restarted cold per variant; Sluice on CPU {PROXY_CPU}, simulators and client on CPU {LOAD_CPU}.",
        "",
        "| variant | output tokens/s | TTFT p50 ms | TTFT p90 ms | prefix-cache hit rate | requests | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    labels = {"default": "Sluice default profile", "rr": "Sluice round_robin", "ll": "Sluice least_loaded",
              "3x": "3 Sluice replicas (default), clients spread at random"}
    for name, _, _ in variants:
        r = results[name]
        lines.append(f"| {labels[name]} | {r['tokens_per_s']:.1f} | {r['ttft_p50'] or 0:.1f} | {r['ttft_p90'] or 0:.1f} | "
                     f"{r['hit_rate']:.3f} | {r['requests']} | {r['errors']} |")
    tps = d["tokens_per_s"] / max(rr["tokens_per_s"], 1e-9)
    p90 = (d["ttft_p90"] or 0) / max(rr["ttft_p90"] or 1e-9, 1e-9)
    rep = three["hit_rate"] / max(d["hit_rate"], 1e-9)
    lines += [
        "",
        f"- default vs round robin: **{tps:.2f}×** output tokens/s (target ≥ 2×: {'met' if tps >= 2 else 'not met'}), "
        f"TTFT p90 **{p90:.2f}×** (target ≤ 0.05×: {'met' if p90 <= 0.05 else 'not met'}).",
        f"- 3 replicas sharing nothing: hit rate {three['hit_rate']:.3f} = **{rep * 100:.1f} %** of one replica's "
        f"(target ≥ 95 %: {'met' if rep >= 0.95 else 'not met'}).",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
