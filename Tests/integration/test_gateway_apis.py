"""Issue 27 through the gateway: the real clients that work against vLLM (here `sluice sim`,
which answers as vLLM 0.32 does) pointed at Sluice instead — the anthropic SDK (messages,
streaming, count_tokens, errors in Anthropic's shape, x-api-key), the openai SDK's Responses
API (create, stream, previous_response_id / retrieve / cancel reaching the server that holds
the response, across two Sluice replicas sharing Redis), rerank/score/tokenize/detokenize/
pooling/classify byte-identical to the server's own answer, an audio upload routed by its
model form field, KServe v2 routed by the model in the path, a WebSocket on /v1/realtime,
token limits on Messages and Responses, pass-through of unknown paths, and metrics by
endpoint kind. HTTP/1.1 and HTTP/2 (httpx) where the protocol allows."""
import json
import time
import urllib.request

import anthropic
import httpx
import openai
import pytest

from conftest import SLUICE, Proc, free_port, have, wait_port

KEY = "sk-gw-test-0123456789"
HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]


@pytest.fixture(scope="module")
def sims():
    """Two simulated vLLM servers (tiny-llama, adapter a1) and one more serving 'whisper' and
    'resnet' (KServe v2 pool); yields their ports."""
    ports, procs = [], []
    for model in ["tiny-llama", "tiny-llama", "whisper", "resnet"]:
        port = free_port()
        procs.append(Proc([SLUICE, "sim", "--port", str(port), "--model", model, "--lora", "a1", "--time-scale", "0.05"]))
        ports.append(port)
    for p in ports:
        wait_port(p)
    yield ports
    for p in procs:
        assert p.stop() == 0


def config(sims, extra="", redis_port=None, models=True):
    text = f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
workers: 2
pools:
  - {{ name: llm, routing: round_robin, endpoints: ["http://127.0.0.1:{sims[0]}", "http://127.0.0.1:{sims[1]}"] }}
  - {{ name: speech, endpoints: ["http://127.0.0.1:{sims[2]}"] }}
  - {{ name: triton, protocol: kserve_v2, endpoints: ["http://127.0.0.1:{sims[3]}"] }}
"""
    if models:
        text += """models:
  - { name: tiny-llama, pool: llm }
  - { name: a1, pool: llm }
  - { name: whisper, pool: speech }
  - { name: resnet, pool: triton }
"""
    if redis_port:
        text += f'redis: {{ url: "redis://127.0.0.1:{redis_port}" }}\n'
    return text + extra


@pytest.fixture
def gw(sluice, sims):
    return sluice(config(sims))


def claude(port, **kw):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


def oai(port, **kw):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


def metrics(admin_port):
    return urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()


def alive(p):
    assert p.p.poll() is None
    with httpx.Client(timeout=5) as h:
        assert h.get(f"http://127.0.0.1:{p.port}/v1/models").status_code == 200


# -- Anthropic Messages ---------------------------------------------------------------------

def test_anthropic_messages_stream_count_tokens(gw):
    c = claude(gw.port)
    m = c.messages.create(model="tiny-llama", max_tokens=8, system="Be brief.", messages=HELLO)
    assert m.type == "message" and m.usage.output_tokens == 8 and m.content[0].text
    with c.messages.stream(model="tiny-llama", max_tokens=6, messages=HELLO) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text and final.usage.output_tokens == 6
    kinds = [e.type for e in c.messages.create(model="a1", max_tokens=3, messages=HELLO, stream=True)]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert c.messages.count_tokens(model="tiny-llama", system="Be brief.", messages=HELLO).input_tokens > 0


def test_anthropic_errors_in_anthropic_shape(gw):
    c = claude(gw.port)
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="nope", max_tokens=8, messages=HELLO)
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "not_found_error"
    with httpx.Client(timeout=5) as h:
        r = h.post(f"http://127.0.0.1:{gw.port}/v1/messages", content=b'{"model":"tiny-llama","messages":[', headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    alive(gw)


def test_anthropic_x_api_key(sluice, sims):
    p = sluice(config(sims, f"auth: {{ api_keys: [{{ key: \"{KEY}\", tenant: t }}] }}\n"))
    assert claude(p.port, api_key=KEY).messages.create(model="tiny-llama", max_tokens=2, messages=HELLO).usage.output_tokens == 2
    with pytest.raises(anthropic.AuthenticationError) as e:
        claude(p.port, api_key="wrong").messages.create(model="tiny-llama", max_tokens=2, messages=HELLO)
    assert e.value.body["error"]["type"] == "authentication_error"
    # Bearer works too (OpenAI clients).
    assert oai(p.port, api_key=KEY).chat.completions.create(model="tiny-llama", messages=HELLO, max_tokens=2).choices


# -- Responses API ---------------------------------------------------------------------------

def test_responses_follow_ups_reach_the_server_holding_them(gw):
    c = oai(gw.port)
    # Round robin over two servers: without id routing every other follow-up would 404.
    for _ in range(4):
        r = c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=4)
        f = c.responses.create(model="tiny-llama", previous_response_id=r.id, input="And then?", max_output_tokens=2)
        assert f.previous_response_id == r.id
        assert c.responses.retrieve(r.id).output_text == r.output_text
        assert c.responses.retrieve(f.id).id == f.id


def test_responses_stream_and_background_cancel(gw):
    c = oai(gw.port)
    for _ in range(3):
        events = list(c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=4, stream=True))
        done = events[-1].response
        assert events[-1].type == "response.completed" and done.usage.output_tokens == 4
        assert c.responses.retrieve(done.id).output_text == done.output_text


def test_responses_background_cancel(sluice):
    ports = [free_port(), free_port()]
    slow = [Proc([SLUICE, "sim", "--port", str(p), "--model", "tiny-llama", "--time-scale", "20"]) for p in ports]
    try:
        for p in ports:
            wait_port(p)
        g = sluice(f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
pools: [{{ name: llm, routing: round_robin, endpoints: ["http://127.0.0.1:{ports[0]}", "http://127.0.0.1:{ports[1]}"] }}]
""")
        c = oai(g.port)
        for _ in range(2):
            r = c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=64, background=True)
            assert r.status == "queued"
            x = c.responses.cancel(r.id)
            assert x.status == "cancelled" and c.responses.retrieve(r.id).status == "cancelled"
    finally:
        for s in slow:
            assert s.stop() == 0


@pytest.mark.skipif(not have("redis-server"), reason="needs redis-server")
def test_responses_across_two_replicas_sharing_redis(sluice, sims):
    redis_port = free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    try:
        wait_port(redis_port)
        a = sluice(config(sims, redis_port=redis_port))
        b = sluice(config(sims, redis_port=redis_port))
        ca, cb = oai(a.port), oai(b.port)
        for i in range(6):
            made, follow = (ca, cb) if i % 2 == 0 else (cb, ca)
            r = made.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=3)
            time.sleep(0.05)  # the id's SET reaches Redis
            f = follow.responses.create(model="tiny-llama", previous_response_id=r.id, input="More", max_output_tokens=2)
            assert f.previous_response_id == r.id
            assert follow.responses.retrieve(r.id).id == r.id
    finally:
        assert redis.stop() == 0


def test_responses_unknown_id_and_gone_endpoint(sluice, sims):
    port = free_port()
    extra = Proc([SLUICE, "sim", "--port", str(port), "--model", "tiny-llama", "--time-scale", "0.05"])
    try:
        wait_port(port)
        g = sluice(f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
pools: [{{ name: llm, endpoints: ["http://127.0.0.1:{port}"] }}]
""")
        c = oai(g.port)
        r = c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=3)
        with pytest.raises(openai.NotFoundError):
            c.responses.retrieve("resp_0123456789abcdef")  # the server's own 404
        # The endpoint leaves the pool (a reload): the gateway says so.
        g.config.write_text(g.config.read_text().replace(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sims[0]}"))
        time.sleep(1.0)
        with pytest.raises(openai.NotFoundError) as e:
            c.responses.retrieve(r.id)
        assert e.value.body["code"] == "response_endpoint_gone" and str(port) in e.value.body["message"]
    finally:
        extra.stop()


# -- the pooling family, tokenizers, audio, KServe ----------------------------------------------

@pytest.mark.parametrize("http2", [False, True])
def test_pooling_family_byte_identical_to_direct(gw, sims, http2):
    cases = [("/v1/rerank", {"model": "tiny-llama", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}),
             ("/rerank", {"model": "tiny-llama", "query": "q", "documents": ["a", "b"]}),
             ("/v1/score", {"model": "tiny-llama", "text_1": "q", "text_2": ["a", "b"]}),
             ("/score", {"model": "tiny-llama", "text_1": "q", "text_2": "a"}),
             ("/tokenize", {"model": "tiny-llama", "prompt": "Hello world"}),
             ("/detokenize", {"model": "tiny-llama", "tokens": [1, 2, 3]}),
             ("/pooling", {"model": "tiny-llama", "input": "x"}),
             ("/classify", {"model": "tiny-llama", "input": ["x"]})]
    with httpx.Client(timeout=10, http2=http2, http1=not http2) as h, httpx.Client(timeout=10) as direct:
        for path, body in cases:
            via = h.post(f"http://127.0.0.1:{gw.port}{path}", json=body)
            ref = direct.post(f"http://127.0.0.1:{sims[0]}{path}", json=body)
            assert via.status_code == ref.status_code == 200, path
            assert via.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            a, b = via.json(), ref.json()
            for d in (a, b):  # ids and timestamps differ per call
                d.pop("id", None)
                d.pop("created", None)
            assert a == b, path
        # Bad input: a clear 400 in OpenAI's shape, the gateway unharmed.
        r = h.post(f"http://127.0.0.1:{gw.port}/v1/rerank", content=b'{"model":"tiny-llama","query":', headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    alive(gw)


def test_audio_routed_by_its_model_field(gw):
    c = oai(gw.port)
    t = c.audio.transcriptions.create(model="whisper", file=("a.wav", b"RIFF" + bytes(64_000), "audio/wav"))
    assert t.text
    with pytest.raises(openai.NotFoundError):
        c.audio.transcriptions.create(model="nope", file=("a.wav", b"RIFF"))
    with httpx.Client(timeout=5) as h:
        r = h.post(f"http://127.0.0.1:{gw.port}/v1/audio/transcriptions", json={"model": "whisper"})
        assert r.status_code == 400 and "multipart" in r.json()["error"]["message"]
        r = h.post(f"http://127.0.0.1:{gw.port}/v1/audio/transcriptions", content=b"--B\r\nbroken",
                   headers={"content-type": "multipart/form-data; boundary=B"})
        assert r.status_code == 400
    # Routed to the speech pool: its server (serving whisper) counted the request.
    assert 'sluice_upstream_requests_total{pool="speech"' in metrics(gw.admin_port)
    alive(gw)


@pytest.mark.parametrize("http2", [False, True])
def test_kserve_v2_routed_by_model_in_path(gw, http2):
    body = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["Hello"]}], "parameters": {"max_tokens": 3}}
    with httpx.Client(timeout=10, http2=http2, http1=not http2) as h:
        base = f"http://127.0.0.1:{gw.port}"
        r = h.post(base + "/v2/models/resnet/infer", json=body)
        assert r.status_code == 200 and r.json()["model_name"] == "resnet"
        assert h.get(base + "/v2/models/resnet/ready").json() == {"name": "resnet", "ready": True}
        assert h.get(base + "/v2/health/ready").status_code == 200
        # A model of an OpenAI pool on a v2 path: KServe's error shape.
        r = h.post(base + "/v2/models/tiny-llama/infer", json=body)
        assert r.status_code == 404 and "Open Inference Protocol" in r.json()["error"]
        r = h.post(base + "/v2/models/nope/infer", json=body)
        assert r.status_code == 404 and isinstance(r.json()["error"], str)


# -- pass-through, model-less chat, limits, metrics ------------------------------------------

def test_passthrough_and_chat_without_model(sluice, sims):
    plain = sluice(config(sims, models=False))
    with httpx.Client(timeout=5) as h:
        # vLLM serves its own model when none is named: so does a pass-through gateway.
        r = h.post(f"http://127.0.0.1:{plain.port}/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["choices"]
        # Unknown paths reach the default pool without models: (a transparent proxy).
        assert h.get(f"http://127.0.0.1:{plain.port}/metrics").status_code == 200
    curated = sluice(config(sims))
    with httpx.Client(timeout=5) as h:
        r = h.get(f"http://127.0.0.1:{curated.port}/metrics")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        r = h.post(f"http://127.0.0.1:{curated.port}/v1/chat/completions", json={"messages": HELLO})
        assert r.status_code == 400 and r.json()["error"]["code"] == "model_required"
    opened = sluice(config(sims, "passthrough: default_pool\n"))
    with httpx.Client(timeout=5) as h:
        assert h.get(f"http://127.0.0.1:{opened.port}/metrics").status_code == 200


@pytest.mark.skipif(not have("redis-server"), reason="needs redis-server")
def test_token_limits_apply_to_messages_and_responses(sluice, sims):
    """Token limits are settled with the usage each API reports: a test that fails if the
    gateway does not read Anthropic's or the Responses API's usage. Messages to a1: 60 tokens
    a minute; each reserves ~7 (prompt estimate + max_tokens 4) and uses 13 (the server's
    template adds input tokens), so settled usage allows 5 and reservations alone 8. Responses
    to tiny-llama: 600 a minute; each reserves ~103 (no max_output_tokens: limits.
    default_max_tokens 100) and uses 25 (the server stops at 16), so settled usage allows ~20
    and reservations alone 5."""
    redis_port = free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    try:
        wait_port(redis_port)
        g = sluice(config(sims, """limits: { default_max_tokens: 100 }
rate_limits:
  - { tenant: "*", model: a1, tokens_per_minute: 60, token_burst: 60 }
  - { tenant: "*", model: tiny-llama, tokens_per_minute: 600, token_burst: 600 }
""", redis_port=redis_port))
        c, o = claude(g.port), oai(g.port)
        served = 0
        with pytest.raises(anthropic.RateLimitError) as e:
            for _ in range(20):
                m = c.messages.create(model="a1", max_tokens=4, messages=[{"role": "user", "content": "hi there"}])
                assert m.usage.input_tokens + m.usage.output_tokens >= 12
                served += 1
        assert served <= 6, served
        assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "rate_limit_error"
        served = 0
        with pytest.raises(openai.RateLimitError):
            for _ in range(60):
                r = o.responses.create(model="tiny-llama", input="hi there")
                assert r.usage.output_tokens == 16
                served += 1
        assert served >= 12, served
        # Streams settle from response.completed too.
        o2 = oai(g.port)
        with pytest.raises(openai.RateLimitError):
            for _ in range(5):
                list(o2.responses.create(model="tiny-llama", input="hi there", stream=True))
    finally:
        assert redis.stop() == 0


def test_metrics_by_endpoint_kind(gw):
    claude(gw.port).messages.create(model="tiny-llama", max_tokens=2, messages=HELLO)
    with httpx.Client(timeout=5) as h:
        h.post(f"http://127.0.0.1:{gw.port}/tokenize", json={"model": "tiny-llama", "prompt": "x"})
    text = metrics(gw.admin_port)
    assert 'sluice_endpoint_requests_total{endpoint="messages",code_class="2xx"} 1' in text
    assert 'sluice_endpoint_requests_total{endpoint="tokenize",code_class="2xx"} 1' in text


# -- the realtime WebSocket ------------------------------------------------------------------

def realtime_config(sims, extra=""):
    return config(sims, extra)


def test_realtime_websocket_through_the_gateway(gw):
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus
    for model in ["tiny-llama", "whisper"]:  # routed by the query's model (the speech pool serves whisper)
        with connect(f"ws://127.0.0.1:{gw.port}/v1/realtime?model={model}", open_timeout=5) as ws:
            hello = json.loads(ws.recv(timeout=5))
            assert hello["type"] == "session.created"
            event = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"})
            ws.send(event)
            assert ws.recv(timeout=5) == event
            ws.send(b"\x00\x01\xff")
            assert ws.recv(timeout=5) == b"\x00\x01\xff"
            ws.send("x" * 1_000_000)  # past realtime.buffer_bytes: backpressure, not loss
            assert ws.recv(timeout=10) == "x" * 1_000_000
            assert ws.ping(b"p").wait(5)
    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://127.0.0.1:{gw.port}/v1/realtime?model=nope", open_timeout=5)
    assert e.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://127.0.0.1:{gw.port}/v1/realtime", open_timeout=5)  # with models:, a model is needed
    assert e.value.response.status_code == 400
    text = metrics(gw.admin_port)
    assert 'sluice_realtime_connections_total{outcome="opened"} 2' in text
    assert 'sluice_endpoint_requests_total{endpoint="realtime",code_class="1xx"} 2' in text
    alive(gw)


def test_realtime_limits_and_idle_timeout(sluice, sims):
    from websockets.sync.client import connect
    from websockets.exceptions import InvalidStatus, ConnectionClosed
    g = sluice(config(sims, "realtime: { max_connections: 1, idle_timeout: 1s }\n"))
    url = f"ws://127.0.0.1:{g.port}/v1/realtime?model=tiny-llama"
    with connect(url, open_timeout=5) as ws:
        ws.recv(timeout=5)
        # The one slot is taken: the next is refused with a 503.
        with pytest.raises(InvalidStatus) as e:
            connect(url, open_timeout=5)
        assert e.value.response.status_code == 503
        assert "realtime.max_connections" in e.value.response.body.decode()
        # Activity keeps it open past the idle timeout...
        for _ in range(3):
            time.sleep(0.5)
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
        # ... silence closes it.
        time.sleep(1.6)
        with pytest.raises(ConnectionClosed):
            ws.send("late")
            ws.recv(timeout=5)
    # The slot came back.
    with connect(url, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    text = metrics(g.admin_port)
    assert 'sluice_realtime_connections_total{outcome="refused"} 1' in text
    assert 'sluice_realtime_connections_total{outcome="idle_closed"} 1' in text
    alive(g)


def test_realtime_abrupt_ends_free_the_slot(sluice, sims):
    import socket as pysocket
    from websockets.sync.client import connect
    g = sluice(config(sims, "realtime: { max_connections: 1 }\n"))
    url = f"ws://127.0.0.1:{g.port}/v1/realtime?model=tiny-llama"
    for _ in range(3):
        # A client that upgrades and vanishes without a close frame.
        s = pysocket.create_connection(("127.0.0.1", g.port))
        s.sendall(b"GET /v1/realtime?model=tiny-llama HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
        s.close()
        time.sleep(0.2)
    with connect(url, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "session.created"
    # A plain GET over HTTP/2 (not an extended CONNECT, see test_realtime_h2.py) is no upgrade: answered by the server.
    with httpx.Client(http2=True, http1=False, timeout=5) as h:
        r = h.get(f"http://127.0.0.1:{g.port}/v1/realtime?model=tiny-llama")
        assert r.http_version == "HTTP/2" and r.status_code in (400, 404, 426)
    alive(g)


# -- hostile input on every new path ---------------------------------------------------------

HOSTILE_BODIES = [b"", b"{", b"[]", b"null", b'{"model":', b'{"model":"tiny-llama"', b"\xff\xfe\x00", b'{"model":7}',
                  b'{"model":"tiny-llama","max_tokens":-1,"messages":[]}', b'{"model":"tiny-llama","max_output_tokens":1e99,"input":"x"}',
                  b'{"model":"tiny-llama","previous_response_id":"' + b"r" * 500 + b'","input":"x"}',
                  b'{"model":"tiny-llama","messages":' + b"[" * 100 + b"]" * 100 + b"}", b'{"model":"\\ud800"}']
HOSTILE_PATHS = ["/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/rerank", "/score", "/pooling",
                 "/classify", "/tokenize", "/detokenize", "/v2/models/resnet/infer", "/v1/audio/transcriptions",
                 "/v1/responses/" + "x" * 100 + "/cancel", "/v1/responses/%zz/cancel", "/v2/models/%41%/infer"]


@pytest.mark.parametrize("http2", [False, True])
def test_hostile_bodies_get_errors_in_the_paths_shape(gw, http2):
    with httpx.Client(timeout=10, http2=http2, http1=not http2) as h:
        for path in HOSTILE_PATHS:
            for body in HOSTILE_BODIES:
                ct = "multipart/form-data; boundary=B" if "audio" in path and body.startswith(b"{") else "application/json"
                r = h.post(f"http://127.0.0.1:{gw.port}{path}", content=body, headers={"content-type": ct})
                assert r.status_code < 500, (path, body[:40], r.status_code, r.text[:200])
                if r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json"):
                    j = r.json()
                    if path.startswith("/v1/messages"):
                        # vLLM itself answers its request-validation errors in OpenAI's shape there
                        # (FastAPI validates before the Anthropic handler): passed through as is.
                        assert (j.get("type") == "error" and "message" in j["error"]) or "message" in j.get("error", {}), (path, body[:40], j)
                    elif path.startswith("/v2/"):
                        assert isinstance(j.get("error") or j.get("detail"), str), (path, j)
                    else:
                        assert "error" in j or "detail" in j, (path, j)
        # Odd realtime and stored-response targets.
        for target in ["/v1/realtime?model=%ff%fe", "/v1/realtime?model=", "/v1/realtime?model=tiny-llama&model=x",
                       "/v1/responses/" + "%41" * 40, "/v1/responses/..", "/v1/responses/a/b"]:
            r = h.get(f"http://127.0.0.1:{gw.port}{target}")
            assert r.status_code < 500, (target, r.status_code, r.text[:200])
    alive(gw)
