"""Issue 7 end to end: the release binary with a real redis-server and a simulated vLLM server,
driven by the openai SDK: cache hits (plain and streamed), API keys, 429 with OpenAI's headers,
and no key in the access log."""
import json
import urllib.request

import openai
import pytest

from conftest import SLUICE, Proc, free_port, have, wait_port

pytestmark = pytest.mark.skipif(not have("redis-server"), reason="needs redis-server")

KEY_A, KEY_B = "sk-team-a-0123456789", "sk-team-b-9876543210"
REDIS_PASSWORD = "redis-pass-5550123"


@pytest.fixture
def stack(sluice):
    redis_port, sim_port = free_port(), free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--requirepass", REDIS_PASSWORD])
    sim = Proc([SLUICE, "sim", "--port", str(sim_port), "--model", "tiny-llama", "--time-scale", "0.01"])
    wait_port(redis_port)
    wait_port(sim_port)
    gw = sluice(f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
workers: 1
logging: {{ access_log: stdout }}
pools: [{{ name: sim, endpoints: ["http://127.0.0.1:{sim_port}"] }}]
models: [{{ name: tiny-llama, pool: sim }}]
redis: {{ url: "redis://:${{env:TEST_REDIS_PASSWORD}}@127.0.0.1:{redis_port}/3" }}
auth:
  api_keys:
    - {{ key: "${{env:TEST_KEY_A}}", tenant: team-a }}
    - {{ key: "${{env:TEST_KEY_B}}", tenant: team-b }}
cache: {{ enabled: true, ttl: 1m }}
rate_limits:
  - {{ tenant: team-b, requests_per_minute: 3 }}
""", extra_env={"TEST_KEY_A": KEY_A, "TEST_KEY_B": KEY_B, "TEST_REDIS_PASSWORD": REDIS_PASSWORD})
    yield gw
    gw.stop()
    sim.stop()
    redis.stop()


def client(gw, key):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{gw.port}/v1", api_key=key, max_retries=0)


def test_sdk_cache_hits_plain_and_streamed(stack):
    c = client(stack, KEY_A)
    ask = dict(model="tiny-llama", messages=[{"role": "user", "content": "Tell me a story"}], max_tokens=6, temperature=0)
    first = c.chat.completions.with_raw_response.create(**ask)
    assert first.headers.get("x-sluice-cache") == "miss"
    second = c.chat.completions.with_raw_response.create(**ask)
    assert second.headers.get("x-sluice-cache") == "hit"
    # The stored answer itself, id included (a fresh one would have a new id).
    assert second.parse().model_dump() == first.parse().model_dump()

    stream_ask = dict(ask, stream=True, stream_options={"include_usage": True})
    raw = []
    for expected in ("miss", "hit"):
        with c.chat.completions.with_streaming_response.create(**stream_ask) as r:
            assert r.headers.get("x-sluice-cache") == expected
            raw.append(b"".join(r.iter_bytes()))
    # Byte for byte what the first client received.
    assert raw[1] == raw[0]
    events = [json.loads(e[6:]) for e in raw[1].decode().split("\n\n") if e.startswith("data: {")]
    assert events[-1]["usage"]["completion_tokens"] == 6
    assert raw[1].endswith(b"data: [DONE]\n\n")
    # The SDK parses the replay like any stream.
    chunks = list(c.chat.completions.create(**stream_ask))
    assert chunks[-1].usage.completion_tokens == 6


def test_sdk_keys_and_limits(stack):
    with pytest.raises(openai.AuthenticationError) as e:
        client(stack, "sk-wrong").models.list()
    assert e.value.body["code"] == "invalid_api_key"
    b = client(stack, KEY_B)
    ask = dict(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    for left in (2, 1, 0):
        r = b.chat.completions.with_raw_response.create(**ask)
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-remaining-requests"] == str(left)
    with pytest.raises(openai.RateLimitError) as e:
        b.chat.completions.create(**ask)
    assert e.value.body["code"] == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    # team-a has no limit rule: unaffected.
    assert client(stack, KEY_A).chat.completions.create(**ask).choices
    log = stack.wait_output('"tenant":"team-b"', '"rate_limit":"limited"', '"tenant":"team-a"')
    assert '"tenant":"team-b"' in log and '"rate_limit":"limited"' in log
    assert KEY_A not in log and KEY_B not in log and "sk-wrong" not in log and REDIS_PASSWORD not in log
    # The admin view names tenants and Redis, never a key or the password.
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/admin/config", timeout=5) as r:
        text = r.read().decode()
    info = json.loads(text)
    assert info["tenants"] == ["team-a", "team-b"] and info["cache"] is True and info["rate_limits"] == 1
    assert "/3" in info["redis"] and "on_failure=open" in info["redis"]
    for secret in (KEY_A, KEY_B, REDIS_PASSWORD):
        assert secret not in text
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'sluice_rate_limit_decisions_total{result="limited"} 1' in metrics
    for secret in (KEY_A, KEY_B, REDIS_PASSWORD):
        assert secret not in metrics


def test_two_processes_share_one_limit(sluice):
    redis_port, sim_port = free_port(), free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    sim = Proc([SLUICE, "sim", "--port", str(sim_port), "--time-scale", "0.01"])
    wait_port(redis_port)
    wait_port(sim_port)
    config = f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
pools: [{{ name: sim, endpoints: ["http://127.0.0.1:{sim_port}"] }}]
redis: {{ url: "redis://127.0.0.1:{redis_port}" }}
rate_limits: [{{ tenant: "*", requests_per_minute: 4 }}]
"""
    try:
        gateways = [sluice(config), sluice(config)]
        assert gateways[0].p.pid != gateways[1].p.pid
        statuses = []
        for i in range(6):
            c = client(gateways[i % 2], "sk-same-key")
            try:
                c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
                statuses.append(200)
            except openai.RateLimitError:
                statuses.append(429)
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        sim.stop()
        redis.stop()
