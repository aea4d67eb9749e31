"""Issue 8: HTTP/2 flow control with a slow reader (the back-pressure reaches the upstream read,
nothing buffers a whole stream), and the flood protections not covered in test_http2.py: PING,
SETTINGS and empty DATA floods each end the connection (GOAWAY ENHANCE_YOUR_CALM or a close)
while the process keeps serving others."""
import socket
import struct
import threading
import time

import h2.connection
import h2.events
import h2.settings
import httpx

from conftest import free_port, wait_port
from test_http2 import h2conn, headers, read_events

TOTAL = 64 << 20  # what the firehose would send if nobody pushed back


class Firehose:
    """A raw HTTP/1.1 upstream that answers any request with a chunked body of TOTAL bytes as fast
    as its socket takes them, counting what the kernel accepted."""

    def __init__(self):
        self.port = free_port()
        self.sent = 0
        self.closed = threading.Event()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(conn,), daemon=True).start()

    def answer(self, conn):
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = conn.recv(65536)
            if not d:
                return
            buf += d
        if not buf.startswith(b"GET /big "):
            # Health checks and telemetry scrapes get a small answer; only /big is the firehose.
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
        try:
            while self.sent < TOTAL:
                conn.sendall(framed)
                self.sent += len(chunk)
            conn.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            self.closed.set()
            conn.close()

    def stop(self):
        self.srv.close()


def test_slow_reader_backpressure_reaches_the_upstream(sluice):
    up = Firehose()
    try:
        s_ = sluice(["--listen", "127.0.0.1:PORT", "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{up.port}"])
        s, c = h2conn(s_.port)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(s_.port, "/big"), end_stream=True)
        s.sendall(c.data_to_send())
        # Read without ever granting more window: at most the initial 64 KiB window arrives.
        received = 0
        s.settimeout(0.5)
        deadline = time.time() + 2
        while time.time() < deadline:
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            if not data:
                break
            for e in c.receive_data(data):
                if isinstance(e, h2.events.DataReceived):
                    received += len(e.data)
            out = c.data_to_send()
            if out:
                s.sendall(out)
        assert 0 < received <= 65535
        # Sluice stopped reading the upstream: what the upstream got rid of is bounded by socket
        # buffers plus Sluice's per-stream high-water mark, far below the whole body.
        stalled_at = up.sent
        time.sleep(1.0)
        assert up.sent == stalled_at, "the upstream kept being read while the client read nothing"
        assert stalled_at < 16 << 20, f"{stalled_at} bytes were pulled from the upstream for a stalled client"
        # Granting window resumes the flow, all the way from the upstream.
        got = received
        c.increment_flow_control_window(8 << 20)
        c.increment_flow_control_window(8 << 20, stream_id=sid)
        s.sendall(c.data_to_send())
        s.settimeout(3)
        while got < received + (4 << 20):
            data = s.recv(1 << 20)
            assert data, "connection closed"
            for e in c.receive_data(data):
                if isinstance(e, h2.events.DataReceived):
                    got += len(e.data)
                    c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            out = c.data_to_send()
            if out:
                s.sendall(out)
        assert up.sent > stalled_at
        # Walking away (RST_STREAM) ends the upstream exchange.
        c.reset_stream(sid)
        s.sendall(c.data_to_send())
        assert up.closed.wait(3), "the upstream connection was not closed after RST_STREAM"
        s.close()
    finally:
        up.stop()


def raw_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def ended(s, c):
    """True when the server ended the connection: GOAWAY (returns its code) or a close."""
    events = read_events(s, c, timeout=5)
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    if goaway:
        return goaway[0].error_code
    s.settimeout(3)
    try:
        while True:
            d = s.recv(1 << 20)
            if not d:
                return "closed"
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        return None


def flood(port, payload_fn):
    s, c = h2conn(port)
    try:
        s.sendall(payload_fn(c))
    except (BrokenPipeError, ConnectionResetError):
        pass
    return s, c


def test_ping_flood_is_cut_off(sluice, nginx_upstream):
    s_ = sluice(["--listen", "127.0.0.1:PORT", "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{nginx_upstream}"])
    # 5,000 PINGs in one go, and never read the ACKs (the outbound-ack queue is bounded).
    s, c = flood(s_.port, lambda c: b"".join(raw_frame(6, 0, 0, struct.pack(">Q", i)) for i in range(5000)))
    code = ended(s, c)
    assert code in (11, "closed", "reset"), code
    s.close()
    assert httpx.get(f"http://127.0.0.1:{s_.port}/v1/models").status_code == 200


def test_settings_flood_is_cut_off(sluice, nginx_upstream):
    s_ = sluice(["--listen", "127.0.0.1:PORT", "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{nginx_upstream}"])
    setting = struct.pack(">HI", 0x3, 100)  # MAX_CONCURRENT_STREAMS = 100
    s, c = flood(s_.port, lambda c: b"".join(raw_frame(4, 0, 0, setting) for _ in range(5000)))
    code = ended(s, c)
    assert code in (11, "closed", "reset"), code
    s.close()
    assert httpx.get(f"http://127.0.0.1:{s_.port}/v1/models").status_code == 200


def test_empty_data_frame_flood_is_cut_off(sluice, nginx_upstream):
    s_ = sluice(["--listen", "127.0.0.1:PORT", "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{nginx_upstream}"])

    def attack(c):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(s_.port, "/v1/chat/completions", "POST"))
        return c.data_to_send() + b"".join(raw_frame(0, 0, sid) for _ in range(20000))
    s, c = flood(s_.port, attack)
    code = ended(s, c)
    assert code == 11, code
    s.close()
    assert httpx.get(f"http://127.0.0.1:{s_.port}/v1/models").status_code == 200
