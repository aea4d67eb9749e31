"""Issue 9: faults, end to end against the release binary.

(a) an upstream dies in the middle of an SSE stream: the client gets the events sent so far,
    then an SSE error event and the end of the response, and the connection closes within 1 s;
    another client streaming through the same worker at the same time is not affected;
(b) an upstream that accepts and never answers: 504 after `timeouts.upstream_first_byte`
    (and a stream that goes silent is cut after `timeouts.upstream_idle`);
(c) an upstream that answers garbage: 502;
(d) an endpoint that flaps (500s, refused connections) is ejected — traffic goes to the other
    endpoint — and re-admitted by the active health check once it recovers;
(e) the config file deleted, truncated to 0 bytes, replaced by invalid YAML: the old config
    stays in force and `reload_failures` grows; a valid file is picked up again.

Upstreams are small raw-socket Python servers in this module, so each fault is exact.
"""
import json
import re
import socket
import struct
import threading
import time
import urllib.request

import pytest

from conftest import free_port

CHAT = b'{"model":"%s","messages":[{"role":"user","content":"hi"}],"stream":%s}'


# ---------------------------------------------------------------------------------------------
# A raw-socket upstream with a handler per request


class RawUpstream:
    """Accepts connections and reads HTTP/1.1 requests (Content-Length bodies); for each one
    calls handler(conn, method, path, headers, body, server), which writes whatever it wants and
    returns True to keep the connection for another request. Can stop and restart listening
    (connections are then refused) on the same port."""

    def __init__(self, handler, port=None):
        self.handler = handler
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.log = []      # (method, path, body) in arrival order
        self.open = []     # sockets handed to handlers that keep them (never-answer)
        self.events = {}   # name -> time.monotonic()
        self.conns = []    # accepted connections
        self.sock = None
        self.listen()

    def listen(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.sock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def stop_listening(self, drop_connections=False):
        """Closes the listener: new connections are refused (RST) from now on. With
        `drop_connections`, the open ones are reset too (the server process died)."""
        s, self.sock = self.sock, None
        if s is not None:
            s.shutdown(socket.SHUT_RDWR)
            s.close()
        if drop_connections:
            with self.lock:
                conns, self.conns = self.conns, []
            for c in conns:
                try:
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop_listening()
        for c in self.open:
            try:
                c.close()
            except OSError:
                pass

    def _accept(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        c.close()
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    buf += c.recv(65536)
                body, buf = buf[:n], buf[n:]
                with self.lock:
                    self.log.append((method, path, body))
                if not self.handler(c, method, path, headers, body, self):
                    return
        except OSError:
            c.close()


def respond(c, status, body, ctype=b"application/json", extra=b""):
    c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n%s"
              % (status, ctype, len(body), extra, body))
    return True


SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def sse_event(i):
    data = (b'data: {"id":"c","object":"chat.completion.chunk","model":"m","choices":[{"index":0,'
            b'"delta":{"content":"t%d"},"finish_reason":null}]}\n\n' % i)
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse_done():
    data = b"data: [DONE]\n\n"
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


# ---------------------------------------------------------------------------------------------
# A raw client that reads a chunked SSE response as it arrives


class StreamResult:
    def __init__(self):
        self.status = 0
        self.head = b""
        self.payload = b""
        self.terminated = False   # the last chunk (0 CRLF CRLF) arrived
        self.eof_at = None        # monotonic time of EOF
        self.error = None


def read_stream(port, body, path=b"/v1/chat/completions", timeout=10.0, linger=2.0):
    """POSTs `body` and reads the whole response (chunked); then waits up to `linger` seconds
    for the server to close the connection."""
    r = StreamResult()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
              % (path, len(body), body))
    buf = b""
    deadline = time.monotonic() + timeout

    def fill():
        nonlocal buf
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except (ConnectionResetError, socket.timeout) as e:
            if isinstance(e, socket.timeout):
                r.error = "timeout"
            d = b""
        if not d:
            r.eof_at = r.eof_at or time.monotonic()
            return False
        buf += d
        return True

    try:
        while b"\r\n\r\n" not in buf:
            if not fill():
                return r
        r.head, buf = buf.split(b"\r\n\r\n", 1)
        r.status = int(r.head.split(b" ")[1])
        if b"transfer-encoding: chunked" not in r.head.lower():
            m = re.search(rb"(?i)content-length: (\d+)", r.head)
            n = int(m.group(1)) if m else None
            while (n is None or len(buf) < n) and fill():
                pass
            r.payload = buf
            while fill():
                pass
            return r
        while True:
            while b"\r\n" not in buf:
                if not fill():
                    return r
            line, rest = buf.split(b"\r\n", 1)
            size = int(line, 16)
            if size == 0:
                buf = rest
                while b"\r\n" not in buf and fill():
                    pass
                r.terminated = buf.startswith(b"\r\n")
                buf = buf[2:]
                break
            while len(rest) < size + 2:
                if not fill():
                    r.payload += rest[:size]
                    return r
                rest = buf.split(b"\r\n", 1)[1]
            r.payload += rest[:size]
            buf = rest[size + 2:]
        # After the last chunk: the connection either stays open (keep-alive) or closes.
        s.settimeout(linger)
        try:
            d = s.recv(1)
            if not d:
                r.eof_at = time.monotonic()
            else:
                r.error = "bytes after the response"
        except socket.timeout:
            pass
        except ConnectionResetError:
            r.eof_at = time.monotonic()
        return r
    finally:
        s.close()


def events(payload):
    return [e for e in payload.decode().split("\n\n") if e.strip()]


def http(port, method, path, body=None, timeout=10):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": "application/json"} if body else {})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read(), time.monotonic() - t0
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read(), time.monotonic() - t0


def openai_error(body):
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    return err


def config(port_upstreams, extra=""):
    eps = ", ".join(f'"http://127.0.0.1:{p}"' for p in port_upstreams)
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 1
telemetry: {{ interval: 0 }}
pools: [{{ name: p, endpoints: [{eps}] }}]
{extra}
"""


# ---------------------------------------------------------------------------------------------
# (a) the upstream dies mid-stream


def dying_or_healthy(c, method, path, headers, body, srv):
    if b'"model":"die' in body:
        c.sendall(SSE_HEAD + sse_event(0) + sse_event(1))
        time.sleep(0.1)  # both events are out before the death
        if b'"model":"die-rst"' in body:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        c.close()
        srv.events["died"] = time.monotonic()
        return False
    if b'"model":"healthy"' in body:
        c.sendall(SSE_HEAD)
        for i in range(10):
            c.sendall(sse_event(i))
            time.sleep(0.1)
        c.sendall(sse_done())
        return True
    return respond(c, 200, b"{}")


@pytest.mark.parametrize("death", ["die", "die-rst"], ids=["fin", "rst"])
def test_upstream_dies_mid_stream(sluice, death):
    up = RawUpstream(dying_or_healthy)
    try:
        s = sluice(config([up.port], "timeouts: { drain_delay: 0s }\nhealth: { interval: 0 }"))
        healthy = {}
        t = threading.Thread(target=lambda: healthy.setdefault("r", read_stream(s.port, CHAT % (b"healthy", b"true"), linger=0.05)))
        t.start()
        time.sleep(0.25)  # the healthy stream is under way on the same worker
        r = read_stream(s.port, CHAT % (death.encode(), b"true"))
        t.join(15)

        assert r.status == 200
        ev = events(r.payload)
        # The two events the upstream sent, unchanged and in order.
        assert len(ev) >= 2 and '"t0"' in ev[0] and '"t1"' in ev[1], ev
        # Then one SSE error event in OpenAI's shape, and the end of the response.
        assert len(ev) == 3, f"expected 2 events and an error event, got {ev}"
        assert ev[2].startswith("data: "), ev[2]
        err = openai_error(ev[2][len("data: "):])
        assert err["type"] == "server_error"
        assert r.terminated, "the chunked response did not end with its last chunk"
        # The connection is closed, within 1 s of the upstream's death.
        assert r.eof_at is not None, "the client connection stayed open"
        assert r.eof_at - up.events["died"] < 1.0

        # The other stream, through the same worker at the same time, completed in full.
        h = healthy["r"]
        assert h.status == 200 and h.terminated, vars(h)
        hev = events(h.payload)
        assert [e for e in hev if "[DONE]" not in e] == [e for e in hev if '"t' in e]
        assert len(hev) == 11 and hev[-1] == "data: [DONE]", hev
    finally:
        up.close()


# ---------------------------------------------------------------------------------------------
# (b) the upstream accepts but never answers; (b') a stream goes silent


def never_answers(c, method, path, headers, body, srv):
    """Keeps the connection open and says nothing (a stream request gets its head and one
    event first, then silence)."""
    srv.open.append(c)
    if b'"stream":true' in body:
        c.sendall(SSE_HEAD + sse_event(0))
    return False


def test_upstream_that_never_answers_gets_504_after_first_byte_timeout(sluice):
    up = RawUpstream(never_answers)
    try:
        s = sluice(config([up.port], "timeouts: { drain_delay: 0s, upstream_first_byte: 1s }\nhealth: { interval: 0 }"))
        status, headers, body, took = http(s.port, "POST", "/v1/chat/completions", CHAT % (b"m", b"false"))
        assert status == 504
        err = openai_error(body)
        assert err["type"] == "timeout"
        assert 0.9 <= took < 2.5, took
        # Not retried elsewhere (a POST that reached a server is not replayed): one upstream request.
        assert len(up.log) == 1
    finally:
        up.close()


def test_stream_that_goes_silent_is_cut_after_upstream_idle(sluice):
    up = RawUpstream(never_answers)
    try:
        s = sluice(config([up.port], "timeouts: { drain_delay: 0s, upstream_idle: 1s }\nhealth: { interval: 0 }"))
        t0 = time.monotonic()
        r = read_stream(s.port, CHAT % (b"m", b"true"))
        assert r.status == 200
        ev = events(r.payload)
        assert len(ev) == 2 and '"t0"' in ev[0], ev
        err = openai_error(ev[1][len("data: "):])
        assert err["type"] in ("server_error", "timeout")
        assert r.terminated and r.eof_at is not None
        assert 0.9 <= r.eof_at - t0 < 2.5
    finally:
        up.close()


# ---------------------------------------------------------------------------------------------
# (c) garbage from the upstream


@pytest.mark.parametrize("garbage", [
    b"NOT HTTP\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,   # a TLS record
    b"",                                                              # closes without a byte
    # A valid head whose chunked body is broken in the same read: nothing has gone to the client
    # yet, so it gets a 502 (Sluice used to close the connection without any response).
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["not-http", "bad-status", "bad-length", "tls", "empty", "bad-chunk-in-first-read"])
def test_upstream_garbage_gets_502(sluice, garbage):
    def handler(c, method, path, headers, body, srv):
        if garbage:
            c.sendall(garbage)
        time.sleep(0.05)
        c.close()
        return False
    up = RawUpstream(handler)
    try:
        s = sluice(config([up.port], "timeouts: { drain_delay: 0s }\nhealth: { interval: 0 }"))
        status, headers, body, took = http(s.port, "POST", "/v1/chat/completions", CHAT % (b"m", b"false"))
        assert status == 502, (status, body)
        err = openai_error(body)
        assert err["type"] == "server_error"
        assert took < 2.0
    finally:
        up.close()


# ---------------------------------------------------------------------------------------------
# (d) a flapping endpoint is ejected and re-admitted


class Flappy:
    """An upstream whose mode can be switched: ok, 500 or refuse (listener closed)."""

    def __init__(self, name):
        self.name = name.encode()
        self.mode = "ok"
        self.up = RawUpstream(self.handle)
        self.port = self.up.port

    def handle(self, c, method, path, headers, body, srv):
        if self.mode == "500":
            return respond(c, 500, b'{"error":{"message":"down","type":"server_error"}}', extra=b"X-Server: " + self.name + b"\r\n")
        return respond(c, 200, b'{"server":"%s"}' % self.name, extra=b"X-Server: " + self.name + b"\r\n")

    def set(self, mode):
        if mode == "refuse":
            self.up.stop_listening(drop_connections=True)
        elif self.mode == "refuse":
            self.up.listen()
        self.mode = mode


def endpoint_state(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/admin/endpoints", timeout=5) as r:
        doc = json.load(r)
    return {e["url"]: e for pool in doc["pools"] for e in pool["endpoints"]}


def wait_for(cond, timeout, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def test_flapping_endpoint_is_ejected_and_readmitted(sluice):
    a, b = Flappy("a"), Flappy("b")
    try:
        # A long ejection backoff, so that only a passing health check can bring b back within
        # the test's time (not the backoff running out).
        s = sluice(config([a.port, b.port], "timeouts: { drain_delay: 0s }\n"
                          "health: { interval: 200ms, timeout: 500ms, eject_base: 30s, max_eject: 60s }"))
        url_b = f"http://127.0.0.1:{b.port}"

        def served_by(n=20):
            out = []
            for _ in range(n):
                st, h, body, _ = http(s.port, "GET", "/v1/anything")
                out.append((st, h.get("X-Server")))
            return out

        def admitted_b():
            return endpoint_state(s.admin_port)[url_b]["admitted"]

        assert wait_for(admitted_b, 2)
        both = served_by(20)
        assert all(st == 200 for st, _ in both)
        assert {srv for _, srv in both} == {"a", "b"}, both

        for bad in ("500", "refuse"):
            ejections_before = endpoint_state(s.admin_port)[url_b]["ejections"]
            b.set(bad)
            assert wait_for(lambda: not admitted_b(), 2), f"b ({bad}) was not ejected"
            st = endpoint_state(s.admin_port)[url_b]
            assert st["ejections"] > ejections_before, st
            # Everything goes to a now, and succeeds.
            out = served_by(20)
            assert out == [(200, "a")] * 20, out
            # b recovers: the health check re-admits it (well before its 30 s ejection ends).
            t0 = time.monotonic()
            b.set("ok")
            assert wait_for(admitted_b, 3), f"b was not re-admitted after {bad}"
            assert time.monotonic() - t0 < 3
            out = served_by(20)
            assert all(st == 200 for st, _ in out) and {srv for _, srv in out} == {"a", "b"}, out
    finally:
        a.up.close()
        b.up.close()


def test_endpoint_failing_on_the_data_path_is_ejected_without_health_checks(sluice):
    # Passive ejection: `health.unhealthy_threshold` consecutive 5xx answers eject the endpoint.
    a, b = Flappy("a"), Flappy("b")
    try:
        s = sluice(config([a.port, b.port], "timeouts: { drain_delay: 0s }\n"
                          "health: { interval: 0, unhealthy_threshold: 3, eject_base: 30s }"))
        url_b = f"http://127.0.0.1:{b.port}"
        b.set("500")
        statuses = [http(s.port, "GET", "/v1/x")[0] for _ in range(30)]
        st = endpoint_state(s.admin_port)[url_b]
        assert st["admitted"] is False and st["ejections"] >= 1, st
        # At most `threshold` requests were answered by b's 500s; the rest went to a.
        assert statuses.count(500) <= 3, statuses
        assert statuses[-10:] == [200] * 10
    finally:
        a.up.close()
        b.up.close()


# ---------------------------------------------------------------------------------------------
# (e) the config file is deleted, truncated, made invalid


def admin_config(admin_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/admin/config", timeout=5) as r:
        return json.load(r)


def test_broken_config_file_keeps_the_old_config(sluice, tmp_path):
    def who(name):
        return lambda c, m, p, h, body, srv: respond(c, 200, b"{}", extra=b"X-Server: " + name + b"\r\n")
    u1, u2 = RawUpstream(who(b"u1")), RawUpstream(who(b"u2"))
    try:
        s = sluice(config([u1.port], "timeouts: { drain_delay: 0s }\nhealth: { interval: 0 }"))
        path = s.config
        good = path.read_text()

        def server():
            st, h, _, _ = http(s.port, "GET", "/v1/x")
            return st, h.get("X-Server")

        assert server() == (200, "u1")
        cfg0 = admin_config(s.admin_port)
        failures = cfg0["reload_failures"]
        generation = cfg0["generation"]

        steps = [
            ("deleted", lambda: path.unlink()),
            ("truncated", lambda: path.write_bytes(b"")),
            ("invalid YAML", lambda: path.write_text("pools: [ { name: p, endpoints: [\n  this is : not: yaml")),
            ("valid YAML, invalid config", lambda: path.write_text("workers: many\n")),
            ("a directory's worth of nothing", lambda: path.write_text("\n\n# only a comment\n")),
        ]
        for what, act in steps:
            act()
            grown = wait_for(lambda: admin_config(s.admin_port)["reload_failures"] > failures, 3)
            cfg = admin_config(s.admin_port)
            assert grown, f"{what}: reload_failures did not grow ({cfg})"
            failures = cfg["reload_failures"]
            assert cfg["generation"] == generation, f"{what}: a new generation was applied ({cfg})"
            # Still serving with the old config.
            for _ in range(5):
                assert server() == (200, "u1"), what
            with urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/readyz", timeout=5) as r:
                assert r.status == 200

        # A valid file again (pointing at u2) is applied.
        path.write_text(good.replace(str(u1.port), str(u2.port)))
        assert wait_for(lambda: admin_config(s.admin_port)["generation"] > generation, 3)
        assert wait_for(lambda: server() == (200, "u2"), 2)
        assert admin_config(s.admin_port)["reload_failures"] == failures
    finally:
        u1.close()
        u2.close()
