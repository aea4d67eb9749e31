"""Issue 8 end to end: the openai SDK over HTTP/2 (httpx http2=True), client RST_STREAM aborting
the upstream, and flood protections answered with GOAWAY while the process stays healthy."""
import socket
import time

import h2.config
import h2.connection
import h2.events
import httpx
import openai
import pytest

from conftest import SLUICE, Proc, demo_ports, wait_port


@pytest.fixture(scope="module")
def demo2():
    # Free ports for the simulated servers and the admin listener too: the defaults (18001...,
    # port + 1010) may be taken by another demo on the same machine.
    port, admin, sim = demo_ports(2)
    p = Proc([SLUICE, "demo", "--port", str(port), "--servers", "2", "--sim-port", str(sim), "--admin", f"127.0.0.1:{admin}"])
    wait_port(port)
    yield port
    assert p.stop() == 0


def test_openai_sdk_over_http2(demo2):
    with httpx.Client(http2=True) as hc:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{demo2}/v1", api_key="unused", http_client=hc, max_retries=0)
        r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert r.usage.completion_tokens == 3
        chunks = list(c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=3, stream=True))
        assert any(ch.choices and ch.choices[0].delta.content for ch in chunks)
        # httpx negotiated HTTP/2 with prior knowledge? It only upgrades over TLS; check the raw client.
    with httpx.Client(http1=False, http2=True) as hc:
        r = hc.get(f"http://127.0.0.1:{demo2}/v1/models")
        assert r.http_version == "HTTP/2" and r.status_code == 200


def h2conn(port):
    s = socket.create_connection(("127.0.0.1", port))
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    return s, c


def read_events(s, c, timeout=3.0):
    s.settimeout(timeout)
    events = []
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            events += c.receive_data(data)
            out = c.data_to_send()
            if out:
                s.sendall(out)
            if any(isinstance(e, (h2.events.ConnectionTerminated, h2.events.StreamEnded)) for e in events):
                break
    except (socket.timeout, ConnectionResetError):
        pass
    return events


def headers(port, path, method="GET"):
    return [(":method", method), (":path", path), (":scheme", "http"), (":authority", f"127.0.0.1:{port}")]


def test_rapid_reset_flood_gets_goaway(demo2):
    s, c = h2conn(demo2)
    body = b'{"model":"tiny-llama","messages":[{"role":"user","content":"x"}],"max_tokens":50}'
    # CVE-2023-44487: open and immediately reset streams, many times.
    for i in range(600):
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(demo2, "/v1/chat/completions", "POST"))
        c.send_data(sid, body, end_stream=True)
        c.reset_stream(sid)
        if i % 50 == 0:
            try:
                s.sendall(c.data_to_send())
            except (BrokenPipeError, ConnectionResetError):
                break
    try:
        s.sendall(c.data_to_send())
    except (BrokenPipeError, ConnectionResetError):
        pass
    events = read_events(s, c)
    goaway = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == 11  # ENHANCE_YOUR_CALM
    s.close()
    # The process is fine: a fresh client is served.
    assert httpx.get(f"http://127.0.0.1:{demo2}/v1/models").status_code == 200


def test_continuation_flood_gets_goaway(demo2):
    s, c = h2conn(demo2)
    s.sendall(c.data_to_send())
    # A HEADERS frame without END_HEADERS followed by many CONTINUATION frames (raw frames).
    import struct
    def frame(ftype, flags, sid, payload):
        return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload
    hdr = c.encoder.encode(headers(demo2, "/v1/models"))
    data = frame(1, 0x0, 1, hdr)  # HEADERS, no END_HEADERS
    for i in range(200):
        data += frame(9, 0x0, 1, c.encoder.encode([(f"x-pad-{i}", "a" * 400)]))
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    events = read_events(s, c)
    # The connection is ended: a GOAWAY, or (when nghttp2 rejects the block first) a close.
    closed = any(isinstance(e, h2.events.ConnectionTerminated) for e in events)
    if not closed:
        s.settimeout(3)
        try:
            closed = s.recv(65536) == b""
        except (ConnectionResetError, socket.timeout) as e:
            closed = isinstance(e, ConnectionResetError)
    assert closed, events
    s.close()
    assert httpx.get(f"http://127.0.0.1:{demo2}/v1/models").status_code == 200


def test_client_reset_aborts_upstream(py_upstream, sluice):
    from conftest import StreamingHandler
    StreamingHandler.events, StreamingHandler.gap = 100, 0.05
    try:
        s_ = sluice(["--listen", "127.0.0.1:PORT", "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{py_upstream.server_port}"])
        s, c = h2conn(s_.port)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(s_.port, "/v1/stream", "POST"), end_stream=True)
        s.sendall(c.data_to_send())
        s.settimeout(3)
        got = False
        while not got:
            for e in c.receive_data(s.recv(65536)):
                if isinstance(e, h2.events.DataReceived):
                    got = True
        c.reset_stream(sid)
        s.sendall(c.data_to_send())
        t0 = time.time()
        while not py_upstream.aborted and time.time() - t0 < 2:
            time.sleep(0.02)
        assert py_upstream.aborted, "the upstream kept streaming after RST_STREAM"
        assert time.time() - t0 < 1.5
        # The connection itself is still usable.
        sid2 = c.get_next_available_stream_id()
        c.send_headers(sid2, headers(s_.port, "/ok"), end_stream=True)
        s.sendall(c.data_to_send())
        events = read_events(s, c)
        assert any(isinstance(e, h2.events.ResponseReceived) for e in events)
        s.close()
    finally:
        StreamingHandler.events, StreamingHandler.gap = 5, 0.1
