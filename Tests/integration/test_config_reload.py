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
