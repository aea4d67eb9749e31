"""Issue 5 end to end: `sluice serve --config`, `sluice validate`, hot reload by file rewrite,
by ConfigMap-style symlink swap and by SIGHUP, under continuous load."""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request

from conftest import SLUICE, free_port, wait_port


def cfg(port, admin, upstreams, drain="0s"):
    eps = ", ".join(f"http://127.0.0.1:{u}" for u in upstreams)
    return f"""
listen: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{admin}" }}
workers: 2
timeouts: {{ drain_delay: {drain} }}
health: {{ interval: 0 }}
telemetry: {{ interval: 0 }}
pools:
  - name: default
    endpoints: [{eps}]
"""


def get_server(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/whoami", timeout=5) as r:
        return r.headers.get("X-Server"), r.status


def start_named_upstreams(n):
    """n tiny HTTP servers that say who they are."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    servers = []
    for i in range(n):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            name = f"u{i}"

            def log_message(self, *a):
                pass

            def do_GET(self):
                body = b"ok"
                self.send_response(200)
                self.send_header("X-Server", self.name)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        s = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    return servers


def test_validate_reports_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers: x\npools: [{ name: p }]\nmodels: [{ name: m, pool: q }]\n")
    r = subprocess.run([SLUICE, "validate", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "workers: must be an integer (line 1)" in r.stdout
    assert "pools[0]: needs endpoints or dns (line 2)" in r.stdout
    assert "models[0].pool: no pool named 'q' (line 3)" in r.stdout
    good = os.path.join(os.path.dirname(__file__), "..", "..", "config", "sluice.yaml")
    assert subprocess.run([SLUICE, "validate", good], capture_output=True).returncode == 0


def test_reload_under_load_by_rewrite_symlink_swap_and_sighup(tmp_path):
    ups = start_named_upstreams(3)
    port, admin = free_port(), free_port()
    # ConfigMap layout: sluice.yaml -> ..data/sluice.yaml, ..data -> a timestamped directory.
    def write_version(k, text):
        d = tmp_path / f"..v{k}"
        d.mkdir()
        (d / "sluice.yaml").write_text(text)
        tmp = tmp_path / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(d.name, tmp)
        os.replace(tmp, tmp_path / "..data")
    write_version(0, cfg(port, admin, [ups[0].server_port]))
    os.symlink("..data/sluice.yaml", tmp_path / "sluice.yaml")
    p = subprocess.Popen([SLUICE, "serve", "--config", str(tmp_path / "sluice.yaml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        assert get_server(port)[0] == "u0"
        failures, done = [], threading.Event()
        count = [0]

        def load():
            while not done.is_set():
                try:
                    _, status = get_server(port)
                    if status != 200:
                        failures.append(status)
                    count[0] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    failures.append(repr(e))
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        for k in range(1, 31):
            target = ups[k % 3]
            if k % 10 == 0:
                write_version(k, "pools: [ this is not valid")   # invalid: the old config stays
                time.sleep(0.3)
                continue
            write_version(k, cfg(port, admin, [target.server_port]))
            deadline = time.time() + 1.0
            while time.time() < deadline and get_server(port)[0] != f"u{k % 3}":
                time.sleep(0.02)
            assert get_server(port)[0] == f"u{k % 3}", f"reload {k} not effective within 1 s"
        done.set()
        for t in threads:
            t.join()
        assert not failures, failures[:5]
        assert count[0] > 100
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        for s in ups:
            s.shutdown()


def test_sighup_reloads(tmp_path):
    ups = start_named_upstreams(2)
    port, admin = free_port(), free_port()
    path = tmp_path / "sluice.yaml"
    path.write_text(cfg(port, admin, [ups[0].server_port]))
    p = subprocess.Popen([SLUICE, "serve", "--config", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        assert get_server(port)[0] == "u0"
        # Write elsewhere and move over: an editor's save. Then also send SIGHUP.
        tmp = tmp_path / "new.yaml"
        tmp.write_text(cfg(port, admin, [ups[1].server_port]))
        os.replace(tmp, path)
        p.send_signal(signal.SIGHUP)
        deadline = time.time() + 1.0
        while time.time() < deadline and get_server(port)[0] != "u1":
            time.sleep(0.02)
        assert get_server(port)[0] == "u1"
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/admin/config", timeout=5) as r:
            info = json.loads(r.read())
        assert info["generation"] >= 2 and info["source"] == str(path) and len(info["digest"]) == 16
        assert info["reload_failures"] == 0
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        for s in ups:
            s.shutdown()


def start_llm_upstreams(n):
    """n HTTP/1.1 keep-alive servers answering POSTs: JSON, or (for `"stream": true`) ten SSE
    events 20 ms apart, chunked. Each says who it is in X-Server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    servers = []
    for i in range(n):
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            name = f"u{i}"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if b'"stream": true' in body or b'"stream":true' in body:
                    self.send_response(200)
                    self.send_header("X-Server", self.name)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    events = [f'data: {{"n":{k}}}\n\n'.encode() for k in range(10)] + [b"data: [DONE]\n\n"]
                    for e in events:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(e), e))
                        self.wfile.flush()
                        time.sleep(0.02)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                out = b'{"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'
                self.send_response(200)
                self.send_header("X-Server", self.name)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)
        s = ThreadingHTTPServer(("127.0.0.1", free_port()), H)
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
    return servers


def test_hundred_rewrites_under_keepalive_and_streaming_load(tmp_path):
    """100 config versions (ConfigMap-style swaps, every 4th also signalled with SIGHUP) while
    keep-alive clients and streaming clients run: split weights change every time, endpoints are
    added and removed, every 10th version is invalid. Nothing fails or is cut short, and each
    endpoint change is in effect within 1 s."""
    import http.client
    ups = start_llm_upstreams(3)
    port, admin = free_port(), free_port()

    def version(k):
        servers = [ups[k % 3]] + ([ups[(k + 1) % 3]] if k % 2 == 0 else [])
        eps = ", ".join(f"http://127.0.0.1:{s.server_port}" for s in servers)
        w = 1 + (k * 37) % 98
        return {s.RequestHandlerClass.name for s in servers}, f"""
listen: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{admin}" }}
workers: 2
timeouts: {{ drain_delay: 0s }}
health: {{ interval: 0 }}
telemetry: {{ interval: 0 }}
pools:
  - name: default
    endpoints: [{eps}]
models:
  - {{ name: ma, pool: default }}
  - {{ name: mb, pool: default }}
  - name: chat
    split: [{{ model: ma, weight: {w} }}, {{ model: mb, weight: {100 - w} }}]
"""

    def write_version(k, text):
        d = tmp_path / f"..v{k}"
        d.mkdir()
        (d / "sluice.yaml").write_text(text)
        tmp = tmp_path / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(d.name, tmp)
        os.replace(tmp, tmp_path / "..data")

    expected, text = version(0)
    write_version(0, text)
    os.symlink("..data/sluice.yaml", tmp_path / "sluice.yaml")
    log = open(tmp_path / "sluice.log", "w")
    p = subprocess.Popen([SLUICE, "serve", "--config", str(tmp_path / "sluice.yaml")],
                         stdout=log, stderr=subprocess.STDOUT)
    chat = json.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    stream = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]})

    def post(conn, body):
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r, r.read()

    failures, done = [], threading.Event()
    counts = {"plain": 0, "stream": 0}

    def keepalive_client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not done.is_set():
            try:
                r, body = post(conn, chat)
                if r.status != 200 or b'"content":"ok"' not in body or not r.getheader("x-sluice-arm"):
                    failures.append(("plain", r.status, body[:100]))
                counts["plain"] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(("plain", repr(e)))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def streaming_client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not done.is_set():
            try:
                r, body = post(conn, stream)
                events = [e for e in body.decode().split("\n\n") if e]
                if r.status != 200 or len(events) != 11 or events[-1] != "data: [DONE]":
                    failures.append(("stream", r.status, body[-80:]))
                counts["stream"] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(("stream", repr(e)))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    try:
        wait_port(port)
        threads = [threading.Thread(target=keepalive_client) for _ in range(2)]
        threads += [threading.Thread(target=streaming_client) for _ in range(2)]
        for t in threads:
            t.start()
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for k in range(1, 101):
            if k % 10 == 0:
                write_version(k, "pools: [ this is not valid")   # the previous version stays
                time.sleep(0.1)
                r, _ = post(probe, chat)
                assert r.getheader("x-server") in expected, f"invalid version {k} changed the routing"
                continue
            expected, text = version(k)
            write_version(k, text)
            if k % 4 == 0:
                p.send_signal(signal.SIGHUP)
            deadline = time.time() + 1.0
            streak = 0
            while streak < 4 and time.time() < deadline:   # 4 in a row: old endpoints are gone
                r, _ = post(probe, chat)
                streak = streak + 1 if r.getheader("x-server") in expected else 0
            assert streak >= 4, f"version {k} ({sorted(expected)}) not in effect within 1 s"
        done.set()
        for t in threads:
            t.join()
        assert not failures, failures[:5]
        assert counts["plain"] > 200 and counts["stream"] > 20, counts
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/admin/config", timeout=5) as r:
            info = json.loads(r.read())
        assert info["reload_failures"] >= 10
    finally:
        done.set()
        p.send_signal(signal.SIGTERM)
        code = p.wait(10)
        for s in ups:
            s.shutdown()
        assert code == 0, (tmp_path / "sluice.log").read_text()[-3000:]
