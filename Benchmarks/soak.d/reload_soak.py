#!/usr/bin/env python3
"""Reload soak for Benchmarks/soak.sh (stdlib only): one `sluice serve` process, --reloads config
rewrites (atomic rename, as editors and ConfigMaps do) that rotate a two-endpoint pool over four
keep-alive upstreams — so every reload drops one endpoint and adds another — while four client
threads send keep-alive requests. Prints open fds and VmRSS at the start and after each quarter,
the config generation reached, the request error count and sluice's exit status (SIGTERM).

With a binary built with `--sanitize=address`, run it with
ASAN_OPTIONS=detect_leaks=1:log_path=DIR/asan: LeakSanitizer's report at exit lists whatever the
reloads left behind (and the exit status is then non-zero).
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--reloads", type=int, default=400)
    ap.add_argument("--interval", type=float, default=0.15, help="seconds between rewrites")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--admin", type=int, default=0)
    a = ap.parse_args()

    ups = []
    for _ in range(4):
        s = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
        ups.append(s)
    port, admin = a.port or free_port(), a.admin or free_port()
    d = tempfile.mkdtemp(prefix="sluice-reload-soak-")
    cfg = os.path.join(d, "sluice.yaml")

    def write(k):
        eps = ", ".join(f'"http://127.0.0.1:{ups[(k + j) % 4].server_port}"' for j in range(2))
        with open(cfg + ".tmp", "w") as f:
            f.write(f'listen: [{{ address: "127.0.0.1:{port}" }}]\nadmin: {{ address: "127.0.0.1:{admin}" }}\n'
                    f"workers: 1\ntimeouts: {{ drain_delay: 0s }}\nhealth: {{ interval: 0 }}\ntelemetry: {{ interval: 0 }}\n"
                    f"pools: [{{ name: p, endpoints: [{eps}] }}]\n")
        os.replace(cfg + ".tmp", cfg)

    write(0)
    p = subprocess.Popen([a.sluice, "serve", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    stop = threading.Event()
    counts = {"ok": 0, "errors": 0}

    def load():
        while not stop.is_set():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/x", timeout=5).read()
                counts["ok"] += 1
            except Exception:  # noqa: BLE001 - counted
                counts["errors"] += 1

    def stat():
        rss = next(ln.split()[1] for ln in open(f"/proc/{p.pid}/status") if ln.startswith("VmRSS"))
        return f"fds {len(os.listdir(f'/proc/{p.pid}/fd'))}, VmRSS {rss} kB"

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    print(f"reload soak: {a.reloads} reloads, one every {a.interval} s, under keep-alive load", flush=True)
    print(f"  start: {stat()}", flush=True)
    for k in range(1, a.reloads + 1):
        write(k)
        time.sleep(a.interval)
        if k % max(1, a.reloads // 4) == 0:
            print(f"  after {k} reloads: {stat()}", flush=True)
    stop.set()
    for t in threads:
        t.join()
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/admin/config", timeout=5) as r:
        c = json.load(r)
    print(f"  generation {c['generation']}, reload failures {c['reload_failures']}; "
          f"requests ok {counts['ok']}, errors {counts['errors']}", flush=True)
    p.send_signal(signal.SIGTERM)
    rc = p.wait(30)
    print(f"  sluice exit status {rc}", flush=True)
    for s in ups:
        s.shutdown()
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
