#!/usr/bin/env python3
"""What shadow traffic costs the client (issue 26), measured in one run, reported as ratios.

One primary `sluice sim` and one shadow sim behind a fresh Sluice per scenario; a closed loop of
`--clients` HTTP/1.1 clients sends `--requests` streamed chats each. Scenarios, in rotating order
(`--rounds`), each with fresh servers:

  none     no shadow (the baseline)
  shadow   models[].shadow with --fraction (default 0.5) to a healthy shadow sim
  slow     the same, the shadow sim holding each request 500 ms (--delay) and failing half

Reported: client latency p50/p99 and their ratio to `none` of the same round, the shadow's
share of requests (sent / total, expected --fraction; ±2 % over 5,000 requests is the issue's
target) and the copies skipped at max_in_flight. Target: p99 ratio within 1.1x.

    python3 Benchmarks/shadow-latency.py [--requests 1250] [--clients 4] [--rounds 1]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, ".build", "release", "sluice")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(port)


def metric(port, name, labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith(name + "{") and all(f'{k}="{v}"' in l for k, v in labels.items()))


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def scenario(kind, args):
    procs = []

    def start(a):
        p = subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        return p

    try:
        primary, shadow, port, admin = free_port(), free_port(), free_port(), free_port()
        start([SLUICE, "sim", "--port", str(primary), "--model", "m", "--time-scale", "0.05"])
        extra = ["--delay", "500", "--fail-rate", "0.5"] if kind == "slow" else []
        start([SLUICE, "sim", "--port", str(shadow), "--model", "m", "--time-scale", "0.05", *extra])
        wait_port(primary)
        wait_port(shadow)
        sh = f", shadow: {{ model: next, fraction: {args.fraction} }}" if kind != "none" else ""
        cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        cfg.write(f"""
listen: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{admin}" }}
workers: 2
timeouts: {{ drain_delay: 0s }}
flow_control: {{ enabled: false }}
pools:
  - {{ name: a, endpoints: ["http://127.0.0.1:{primary}"] }}
  - {{ name: b, endpoints: ["http://127.0.0.1:{shadow}"] }}
models:
  - {{ name: chat, pool: a, upstream_model: m{sh} }}
  - {{ name: next, pool: b, upstream_model: m }}
""")
        cfg.close()
        start([SLUICE, "serve", "--config", cfg.name])
        wait_port(port)
        lat, errors = [], [0]
        lock = threading.Lock()

        def client():
            mine = []
            with httpx.Client(timeout=10) as c:
                for _ in range(args.requests):
                    t0 = time.perf_counter()
                    try:
                        with c.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                                      json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "stream": True}) as r:
                            for _ in r.iter_bytes():
                                pass
                            ok = r.status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    if ok:
                        mine.append(time.perf_counter() - t0)
                    else:
                        errors[0] += 1
            with lock:
                lat.extend(mine)

        ts = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        time.sleep(1)
        sent = metric(admin, "sluice_shadow_requests_total", {"result": "sent"})
        skipped = metric(admin, "sluice_shadow_requests_total", {"result": "skipped"})
        return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "n": len(lat), "errors": errors[0], "sent": sent, "skipped": skipped}
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=20)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1250, help="per client")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    kinds = ["none", "shadow", "slow"]
    for r in range(args.rounds):
        order = kinds[r % 3:] + kinds[:r % 3]
        res = {k: scenario(k, args) for k in order}
        base = res["none"]
        for k in kinds:
            x = res[k]
            total = x["n"] + x["errors"]
            share = (x["sent"] + x["skipped"]) / total if total else 0
            print(f"round {r + 1} {k:6}: n={x['n']} errors={x['errors']} p50={x['p50'] * 1000:.2f} ms ({x['p50'] / base['p50']:.2f}x) "
                  f"p99={x['p99'] * 1000:.2f} ms ({x['p99'] / base['p99']:.2f}x) sampled={share:.4f} sent={x['sent']:.0f} skipped={x['skipped']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
