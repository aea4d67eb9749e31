"""Fixtures for end-to-end tests of the release `sluice` binary with real peers:
nginx as a fixed-response upstream, a Python streaming upstream, curl, wrk, the openai SDK.
Every process a fixture starts is ended by its PID."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, ".build", "release", "sluice")

FIXED_BODY = ('{"id":"chatcmpl-1","object":"chat.completion","model":"tiny","choices":[{"index":0,'
              '"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],'
              '"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n, avoid=()):
    """A first port of n consecutive free loopback ports, none of them in `avoid` (`sluice demo
    --sim-port`: the kernel hands out ports close together, so a free port's neighbours may be
    the gateway's own)."""
    for _ in range(100):
        base = free_port()
        ports = range(base, base + n)
        if base + n > 65535 or any(p in avoid for p in ports):
            continue
        try:
            for p in ports:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports")


def demo_ports(servers):
    """(port, admin port, first simulated server's port) for `sluice demo`, all free and apart."""
    port, admin = free_port(), free_port()
    while admin == port:
        admin = free_port()
    return port, admin, free_port_range(servers, avoid={port, admin})


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


class Proc:
    def __init__(self, args, **kw):
        self.log = tempfile.NamedTemporaryFile(prefix="sluice-it-", suffix=".log", delete=False)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, **kw)

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_output(self, *needles, timeout=5.0):
        """The output once it holds every needle (or as it is at the timeout). The access log
        is written by its own thread every 100 ms, so a line appears a little after its
        response."""
        end = time.time() + timeout
        while True:
            text = self.output()
            if all(n in text for n in needles) or time.time() > end:
                return text
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@pytest.fixture
def nginx_upstream(tmp_path):
    """nginx serving a fixed chat-completion body; yields its port."""
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(textwrap.dedent(f"""
        worker_processes 1; daemon off; pid {tmp_path}/nginx.pid; error_log stderr error;
        events {{ worker_connections 1024; }}
        http {{ access_log off; client_body_temp_path {tmp_path};
          server {{ listen 127.0.0.1:{port}; keepalive_requests 100000;
            location / {{ default_type application/json; return 200 '{FIXED_BODY}'; }} }} }}
    """))
    p = Proc(["nginx", "-c", str(conf), "-p", str(tmp_path)])
    wait_port(port)
    yield port
    p.stop(signal.SIGQUIT)


class StreamingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    events = 5
    gap = 0.1

    def log_message(self, *a):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        self.server.seen.append((self.path, dict(self.headers), body))
        if self.path.startswith("/slow"):
            time.sleep(1.0)
        if "stream" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(self.events):
                    data = f"data: {{\"n\":{i}}}\n\n".encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    self.server.sent = i + 1
                    time.sleep(self.gap)
                done = b"data: [DONE]\n\n"
                self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            except (BrokenPipeError, ConnectionResetError):
                self.server.aborted = True
            return
        out = FIXED_BODY.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST


@pytest.fixture
def py_upstream():
    port = free_port()
    srv = ThreadingHTTPServer(("127.0.0.1", port), StreamingHandler)
    srv.daemon_threads = True
    srv.seen, srv.sent, srv.aborted = [], 0, False
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def sluice(tmp_path):
    """Starts `sluice serve` with a config; call it with the YAML text (PORT and ADMIN_PORT are
    substituted); returns (port, proc)."""
    procs = []

    def start(config, extra_env=None):
        """`config` is YAML text, or a list of `sluice serve` flags (PORT/ADMIN_PORT substituted)."""
        port, admin = free_port(), free_port()
        sub = lambda t: t.replace("ADMIN_PORT", str(admin)).replace("PORT", str(port))
        if isinstance(config, list):
            args = [SLUICE, "serve"] + [sub(a) for a in config]
            cfg = None
        else:
            cfg = tmp_path / f"sluice-{len(procs)}.yaml"  # one file per process (each watches its own)
            cfg.write_text(sub(config))
            args = [SLUICE, "serve", "--config", str(cfg)]
        env = dict(os.environ, **(extra_env or {}))
        p = Proc(args, env=env)
        procs.append(p)
        wait_port(port)
        p.port, p.admin_port, p.config = port, admin, cfg
        return p

    yield start
    for p in procs:
        p.stop()


def have(tool):
    return shutil.which(tool) is not None
