"""Issue 27: WebSockets over HTTP/2 (RFC 8441 extended CONNECT) on /v1/realtime, end to end with a
real HTTP/2 client (the `h2` package, h2c prior knowledge) through Sluice to `sluice sim`: the
SETTINGS frame advertises ENABLE_CONNECT_PROTOCOL; a WebSocket echo through the tunnel while
another request runs on the same connection; realtime.max_connections shared with HTTP/1.1
tunnels; realtime.idle_timeout; a client RST_STREAM (or a vanished connection) frees the slot;
extended CONNECT elsewhere, with another protocol, or plain CONNECT gets a JSON error; the
server closing ends the stream. WebSocket frames are written and read by hand (RFC 6455 §5)."""
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.request

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import base64
import hashlib

from conftest import SLUICE, Proc, free_port, wait_port


@pytest.fixture(scope="module")
def sims():
    ports, procs = [], []
    for model in ["tiny-llama", "tiny-llama"]:
        port = free_port()
        procs.append(Proc([SLUICE, "sim", "--port", str(port), "--model", model, "--time-scale", "0.05"]))
        ports.append(port)
    for p in ports:
        wait_port(p)
    yield ports
    for p in procs:
        assert p.stop() == 0


def config(sims, extra=""):
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
workers: 2
pools:
  - {{ name: llm, routing: round_robin, endpoints: ["http://127.0.0.1:{sims[0]}", "http://127.0.0.1:{sims[1]}"] }}
models:
  - {{ name: tiny-llama, pool: llm }}
""" + extra


def metrics(admin_port):
    return urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()


# -- WebSocket frames (client side: masked) --------------------------------------------------

def ws_frame(payload, opcode=1):
    if isinstance(payload, str):
        payload = payload.encode()
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_parse(buf):
    """One server frame from the front of buf: (opcode, payload, rest) or None."""
    if len(buf) < 2:
        return None
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, at = struct.unpack(">H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, at = struct.unpack(">Q", buf[2:10])[0], 10
    if len(buf) < at + n:
        return None
    return opcode, bytes(buf[at:at + n]), buf[at + n:]


# -- an HTTP/2 client connection --------------------------------------------------------------

class H2:
    def __init__(self, port, tls=False):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # a throwaway self-signed certificate
            ctx.set_alpn_protocols(["h2"])
            self.s = ctx.wrap_socket(self.s, server_hostname="127.0.0.1")
            assert self.s.selected_alpn_protocol() == "h2"
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.c.initiate_connection()
        self.s.sendall(self.c.data_to_send())
        self.headers, self.data, self.ended, self.reset = {}, {}, set(), {}
        self.remote_settings = None
        self.closed = False
        self.wait(lambda: self.remote_settings is not None)

    def pump(self, timeout):
        self.s.settimeout(timeout)
        try:
            chunk = self.s.recv(1 << 20)
        except socket.timeout:
            return
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.closed = True
            return
        for e in self.c.receive_data(chunk):
            if isinstance(e, h2.events.RemoteSettingsChanged):
                self.remote_settings = {k: v.new_value for k, v in e.changed_settings.items()}
            elif isinstance(e, h2.events.ResponseReceived):
                self.headers[e.stream_id] = dict(e.headers)
            elif isinstance(e, h2.events.DataReceived):
                self.data.setdefault(e.stream_id, bytearray()).extend(e.data)
                # What we read reopens the windows (the flow-controlled bytes, padding too).
                self.c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, h2.events.StreamEnded):
                self.ended.add(e.stream_id)
            elif isinstance(e, h2.events.StreamReset):
                self.reset[e.stream_id] = e.error_code
            elif isinstance(e, h2.events.ConnectionTerminated):
                self.closed = True
        self.flush()

    def flush(self):
        out = self.c.data_to_send()
        if out:
            self.s.sendall(out)

    def wait(self, cond, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            assert left > 0, "timed out"
            assert not self.closed, "connection closed"
            self.pump(min(left, 0.5))

    def connect(self, path="/v1/realtime?model=tiny-llama", protocol="websocket", extra=()):
        sid = self.c.get_next_available_stream_id()
        hs = [(":method", "CONNECT"), (":protocol", protocol), (":scheme", "http"), (":path", path),
              (":authority", f"127.0.0.1:{self.port}"), ("sec-websocket-version", "13")] + list(extra)
        self.c.send_headers(sid, hs)
        self.flush()
        return sid

    def request(self, path, method="GET", body=None):
        sid = self.c.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{self.port}")]
        if body is not None:
            hs.append(("content-type", "application/json"))
        self.c.send_headers(sid, hs, end_stream=body is None)
        if body is not None:
            self.c.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def status(self, sid, timeout=5.0):
        self.wait(lambda: sid in self.headers or sid in self.reset, timeout)
        # An error answer on a tunnel stream is followed by RST_STREAM(NO_ERROR) (the client
        # is asked to stop sending); a reset without an answer is a failure.
        assert sid in self.headers, f"stream reset: {self.reset[sid]}"
        return int(self.headers[sid][":status"])

    def body(self, sid, timeout=5.0):
        self.wait(lambda: sid in self.ended or sid in self.reset, timeout)
        return bytes(self.data.get(sid, b""))

    def send(self, sid, data, end_stream=False):
        """Sends all of data, waiting for window as the server reopens it."""
        view = memoryview(data)
        while len(view):
            room = min(self.c.local_flow_control_window(sid), self.c.max_outbound_frame_size)
            if room == 0:
                self.pump(0.5)
                continue
            self.c.send_data(sid, bytes(view[:room]))
            view = view[room:]
            self.flush()
        if end_stream:
            self.c.end_stream(sid)
            self.flush()

    def ws_recv(self, sid, timeout=5.0):
        """The next WebSocket frame the server sent on the stream: (opcode, payload)."""
        box = []

        def have():
            buf = self.data.get(sid, bytearray())
            f = ws_parse(buf)
            if f:
                box.append(f[:2])
                self.data[sid] = bytearray(f[2])
                return True
            return False

        self.wait(have, timeout)
        return box[0]

    def close(self):
        self.s.close()


def error_of(h, sid):
    body = json.loads(h.body(sid))
    assert set(body["error"]) >= {"message", "type"}
    return body["error"]["message"]


# -- tests ------------------------------------------------------------------------------------

def test_settings_advertise_extended_connect(sluice, sims):
    g = sluice(config(sims))
    h = H2(g.port)
    assert h.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
    h.close()


def test_websocket_echo_over_http2_with_a_parallel_request(sluice, sims):
    g = sluice(config(sims))
    h = H2(g.port)
    sid = h.connect(extra=[("sec-websocket-protocol", "realtime")])
    assert h.status(sid) == 200
    assert "sec-websocket-accept" not in h.headers[sid]
    assert "x-request-id" in h.headers[sid]
    op, hello = h.ws_recv(sid)
    assert op == 1 and json.loads(hello)["type"] == "session.created"
    # A normal request on the same connection while the tunnel is open: streamed chat.
    chat = h.request("/v1/chat/completions", "POST", json.dumps(
        {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20, "stream": True}).encode())
    event = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"})
    h.send(sid, ws_frame(event))
    assert h.ws_recv(sid) == (1, event.encode())
    assert h.status(chat) == 200
    assert b"data: [DONE]" in h.body(chat)
    models = h.request("/v1/models")
    assert h.status(models) == 200 and b"tiny-llama" in h.body(models)
    h.send(sid, ws_frame(b"\x00\x01\xff", opcode=2))
    assert h.ws_recv(sid) == (2, b"\x00\x01\xff")
    # More than the stream's window (1 MiB) and the tunnel's queues at once (the sim takes
    # messages up to 1 MiB): flow control, not loss.
    big = ["x" * 900_000, "y" * 900_000, "z" * 900_000]
    h.send(sid, b"".join(ws_frame(m) for m in big))
    for m in big:
        assert h.ws_recv(sid, timeout=20) == (1, m.encode())
    # The client ends its side: the server's connection is closed and the stream ends.
    h.send(sid, b"", end_stream=True)
    h.wait(lambda: sid in h.ended or sid in h.reset)
    # The connection carries on.
    again = h.request("/v1/models")
    assert h.status(again) == 200
    h.close()
    text = metrics(g.admin_port)
    assert 'sluice_realtime_connections_total{outcome="opened"} 1' in text
    assert 'sluice_realtime_connections_total{outcome="closed"} 1' in text
    assert 'sluice_endpoint_requests_total{endpoint="realtime",code_class="2xx"} 1' in text
    sent = [l for l in text.splitlines() if l.startswith('sluice_realtime_bytes_total{direction="client_to_server"}')]
    assert sent and float(sent[0].split()[-1]) > 2_700_000


def test_server_close_ends_the_stream(sluice, sims):
    g = sluice(config(sims))
    h = H2(g.port)
    sid = h.connect()
    assert h.status(sid) == 200
    h.ws_recv(sid)
    h.send(sid, ws_frame(struct.pack(">H", 1000), opcode=8))  # close: the sim answers and closes
    assert h.ws_recv(sid) == (8, struct.pack(">H", 1000))
    h.wait(lambda: sid in h.ended)
    assert h.status(h.request("/v1/models")) == 200
    h.close()


def test_limit_shared_with_http1_and_idle_timeout(sluice, sims):
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus
    g = sluice(config(sims, "realtime: { max_connections: 1, idle_timeout: 1s }\n"))
    url = f"ws://127.0.0.1:{g.port}/v1/realtime?model=tiny-llama"
    h = H2(g.port)
    # An HTTP/1.1 tunnel holds the one slot: the HTTP/2 one is refused with a 503 JSON error.
    with connect(url, open_timeout=5) as ws:
        ws.recv(timeout=5)
        sid = h.connect()
        assert h.status(sid) == 503
        assert "realtime.max_connections" in error_of(h, sid)
    time.sleep(0.3)
    # Now the HTTP/2 tunnel holds it: HTTP/1.1 is refused.
    sid = h.connect()
    assert h.status(sid) == 200
    h.ws_recv(sid)
    with pytest.raises(InvalidStatus) as e:
        connect(url, open_timeout=5)
    assert e.value.response.status_code == 503
    # Activity keeps it open past the idle timeout...
    for _ in range(3):
        time.sleep(0.5)
        h.send(sid, ws_frame("ping"))
        assert h.ws_recv(sid) == (1, b"ping")
    # ... silence resets the stream (CANCEL), and only that stream.
    started = time.monotonic()
    h.wait(lambda: sid in h.reset, timeout=5)
    assert h.reset[sid] == 8 and time.monotonic() - started > 0.6
    assert h.status(h.request("/v1/models")) == 200
    # The slot came back.
    time.sleep(0.2)
    with connect(url, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    h.close()
    text = metrics(g.admin_port)
    assert 'sluice_realtime_connections_total{outcome="refused"} 2' in text
    assert 'sluice_realtime_connections_total{outcome="idle_closed"} 1' in text


def test_client_reset_and_vanished_connection_free_the_slot(sluice, sims):
    g = sluice(config(sims, "realtime: { max_connections: 1 }\n"))
    h = H2(g.port)
    for _ in range(3):
        sid = h.connect()
        assert h.status(sid) == 200
        h.ws_recv(sid)
        h.c.reset_stream(sid)
        h.flush()
        time.sleep(0.2)
    # A connection that vanishes with its tunnel open.
    other = H2(g.port)
    sid = other.connect()
    assert other.status(sid) == 200
    other.close()
    time.sleep(0.3)
    sid = h.connect()
    assert h.status(sid) == 200
    assert json.loads(h.ws_recv(sid)[1])["type"] == "session.created"
    text = metrics(g.admin_port)
    h.close()
    assert 'sluice_realtime_connections_total{outcome="opened"} 5' in text
    assert 'sluice_realtime_connections_total{outcome="closed"} 4' in text


def test_extended_connect_errors(sluice, sims):
    g = sluice(config(sims))
    h = H2(g.port)
    sid = h.connect(protocol="h2-tunnel")
    assert h.status(sid) == 400 and ":protocol websocket" in error_of(h, sid)
    sid = h.connect(path="/v1/chat/completions")
    assert h.status(sid) == 404 and "/v1/realtime" in error_of(h, sid)
    sid = h.connect(path="/v1/models")
    assert h.status(sid) == 404
    sid = h.connect(path="/v1/realtime?model=nope")
    assert h.status(sid) == 404
    error_of(h, sid)
    sid = h.connect(path="/v1/realtime")  # with models:, the model is needed
    assert h.status(sid) == 400
    error_of(h, sid)
    # Plain CONNECT (a TCP tunnel to :authority) stays refused.
    sid = h.c.get_next_available_stream_id()
    h.c.send_headers(sid, [(":method", "CONNECT"), (":authority", "127.0.0.1:22")])
    h.flush()
    assert h.status(sid) == 405
    error_of(h, sid)
    # Nothing of it hurt the connection or the process.
    assert h.status(h.request("/v1/models")) == 200
    h.close()
    assert g.p.poll() is None


def test_websocket_over_tls_h2(sluice, sims, tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", "key.pem", "-out", "cert.pem"], cwd=tmp_path, check=True, capture_output=True)
    text = config(sims).replace('listen: [{ address: "127.0.0.1:PORT" }]',
                                f'listen: [{{ address: "127.0.0.1:PORT", tls: {{ cert: "{tmp_path}/cert.pem", key: "{tmp_path}/key.pem" }} }}]')
    g = sluice(text)
    h = H2(g.port, tls=True)
    assert h.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1
    sid = h.connect()
    assert h.status(sid) == 200
    assert json.loads(h.ws_recv(sid)[1])["type"] == "session.created"
    models = h.request("/v1/models")
    h.send(sid, ws_frame("over tls"))
    assert h.ws_recv(sid) == (1, b"over tls")
    assert h.status(models) == 200
    h.send(sid, ws_frame(struct.pack(">H", 1000), opcode=8))
    assert h.ws_recv(sid) == (8, struct.pack(">H", 1000))
    h.wait(lambda: sid in h.ended)
    h.close()


class StalledWebSocketServer:
    """Accepts WebSocket upgrades (101 with the right Accept) and then never reads: a model
    server that stopped taking the client's bytes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            if not head.startswith(b"GET /v1/realtime"):  # health checks and scrapes
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
                c.close()
                continue
            key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_stalled_server_stalls_its_stream_only(sluice, sims):
    up = StalledWebSocketServer()
    try:
        g = sluice(sluice_config_with_stalled(sims, up.port))
        h = H2(g.port)
        sid = h.connect("/v1/realtime?model=stalled")
        assert h.status(sid) == 200
        # The client's window reopens only for bytes written to the server: with the server not
        # reading, sending stalls once the stream window and the sockets' buffers are full,
        # instead of the gateway buffering without bound.
        chunk = b"\x00" * 16384
        sent, deadline = 0, time.monotonic() + 4
        while time.monotonic() < deadline and sent < 64 << 20:
            room = min(h.c.local_flow_control_window(sid), len(chunk))
            if room == 0:
                h.pump(0.2)
                continue
            h.c.send_data(sid, chunk[:room])
            h.flush()
            sent += room
        assert sent < 32 << 20, sent
        # The connection's other streams carry on, bodies included (within http2_buffer_bytes).
        chat = h.request("/v1/chat/completions", "POST", json.dumps(
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}).encode())
        assert h.status(chat) == 200
        assert json.loads(h.body(chat))["usage"]["completion_tokens"] == 3
        h.c.reset_stream(sid)
        h.flush()
        assert h.status(h.request("/v1/models")) == 200
        h.close()
    finally:
        up.stop()


def sluice_config_with_stalled(sims, stalled_port):
    return config(sims).replace("models:\n", f"""  - {{ name: stalled, endpoints: ["http://127.0.0.1:{stalled_port}"] }}
models:
  - {{ name: stalled, pool: stalled }}
""")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def test_small_frames_to_a_stalled_server_stay_bounded(sluice, sims):
    """A client filling its window with tiny DATA frames towards a server that does not read:
    the gateway holds the bytes, not a pool block per frame."""
    up = StalledWebSocketServer()
    try:
        g = sluice(sluice_config_with_stalled(sims, up.port))
        h = H2(g.port)
        sid = h.connect("/v1/realtime?model=stalled")
        assert h.status(sid) == 200
        before = rss_kib(g.p.pid)
        frame, sent, deadline = b"\x00" * 64, 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            if h.c.local_flow_control_window(sid) < len(frame):
                h.pump(0.3)
                if h.c.local_flow_control_window(sid) < len(frame):
                    break  # stalled: the window stays shut
                continue
            for _ in range(min(1000, h.c.local_flow_control_window(sid) // len(frame))):
                h.c.send_data(sid, frame)
                sent += len(frame)
            h.flush()
        assert sent > 1 << 20
        grown = rss_kib(g.p.pid) - before
        # ~16k frames held: a 4 KiB block each would be 64 MiB.
        assert grown < 24 << 10, (grown, sent)
        assert h.status(h.request("/v1/models")) == 200
        h.close()
    finally:
        up.stop()
