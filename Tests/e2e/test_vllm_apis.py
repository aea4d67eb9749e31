"""Issue 27 against REAL vLLM (two CPU servers, the session's cluster): the clients that work
against vLLM work through Sluice — the anthropic SDK (messages, streaming, count_tokens), the
openai SDK's Responses API with previous_response_id across the two servers behind two Sluice
replicas sharing Redis (the follow-up reaches the server holding the state every time), and
tokenize/detokenize/rerank/score/pooling/classify/audio/realtime answered through Sluice exactly as
vLLM answers them directly (a generative model refuses the pooling and audio paths: the same
refusal, byte for byte, is what a client must see)."""
import json
import shutil
import subprocess
import time

import anthropic
import httpx
import openai
import pytest

from vllm_e2e import BASE, free_port, wait_port

HELLO = [{"role": "user", "content": "Write a function that adds two numbers."}]


def yaml(servers, routing="round_robin", extra=""):
    eps = ", ".join(f'"{s.url}"' for s in servers)
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 1
timeouts: {{ drain_delay: 0s }}
telemetry: {{ interval: 100ms }}
pools: [{{ name: vllm, endpoints: [{eps}], routing: {routing} }}]
models: [{{ name: {BASE}, pool: vllm }}]
{extra}"""


def test_anthropic_sdk_through_sluice(vllm, sluice):
    gw = sluice(yaml(vllm.servers))
    c = anthropic.Anthropic(base_url=f"http://127.0.0.1:{gw.port}", api_key="sk-e2e", max_retries=0, timeout=120)
    m = c.messages.create(model=BASE, max_tokens=8, system="Be brief.", messages=HELLO)
    assert m.type == "message" and m.usage.output_tokens > 0 and m.usage.input_tokens > 0
    with c.messages.stream(model=BASE, max_tokens=6, messages=HELLO) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert final.content[0].text == text and final.usage.output_tokens > 0
    n = c.messages.count_tokens(model=BASE, system="Be brief.", messages=HELLO)
    direct = anthropic.Anthropic(base_url=vllm.a.url, api_key="x", max_retries=0).messages.count_tokens(model=BASE, system="Be brief.", messages=HELLO)
    assert n.input_tokens == direct.input_tokens > 0
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="nope", max_tokens=8, messages=HELLO)
    assert e.value.body["type"] == "error"


def test_responses_follow_ups_across_two_replicas_sharing_redis(vllm, sluice):
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server")
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(redis_port)
        extra = f'redis: {{ url: "redis://127.0.0.1:{redis_port}" }}\n'
        a, b = sluice(yaml(vllm.servers, extra=extra)), sluice(yaml(vllm.servers, extra=extra))
        ca = openai.OpenAI(base_url=a.base_url, api_key="sk-e2e", max_retries=0, timeout=120)
        cb = openai.OpenAI(base_url=b.base_url, api_key="sk-e2e", max_retries=0, timeout=120)
        for i in range(6):
            made, follow = (ca, cb) if i % 2 == 0 else (cb, ca)
            r = made.responses.create(model=BASE, input="Say hello.", max_output_tokens=4, temperature=0)
            time.sleep(0.05)
            f = follow.responses.create(model=BASE, previous_response_id=r.id, input="Again.", max_output_tokens=4)
            assert f.previous_response_id == r.id
            assert follow.responses.retrieve(r.id).id == r.id
        # Streams: the id is remembered from response.created.
        events = list(ca.responses.create(model=BASE, input="Hi", max_output_tokens=3, stream=True))
        done = [e for e in events if e.type == "response.completed"][0].response
        assert cb.responses.retrieve(done.id).id == done.id
    finally:
        redis.terminate()
        redis.wait(10)


def strip(body):
    try:
        d = json.loads(body)
    except ValueError:
        return body
    if isinstance(d, dict):
        for k in ("id", "created", "request_id"):
            d.pop(k, None)
    return d


@pytest.mark.parametrize("http2", [False, True])
def test_other_paths_answer_as_vllm_does(vllm, sluice, http2):
    gw = sluice(yaml([vllm.a]))
    cases = [("/tokenize", {"model": BASE, "prompt": "Hello world"}),
             ("/detokenize", {"model": BASE, "tokens": [1, 15043, 3186]}),
             ("/v1/rerank", {"model": BASE, "query": "q", "documents": ["a", "b"]}),
             ("/score", {"model": BASE, "text_1": "q", "text_2": "a"}),
             ("/pooling", {"model": BASE, "input": "x"}),
             ("/classify", {"model": BASE, "input": ["x"]})]
    with httpx.Client(timeout=60, http2=http2, http1=not http2) as h, httpx.Client(timeout=60) as d:
        for path, body in cases:
            via = h.post(f"http://127.0.0.1:{gw.port}{path}", json=body)
            ref = d.post(vllm.a.url + path, json=body)
            assert via.status_code == ref.status_code, (path, via.text, ref.text)
            assert strip(via.content) == strip(ref.content), path
        files = {"file": ("a.wav", b"RIFF" + bytes(1000), "audio/wav")}
        via = h.post(f"http://127.0.0.1:{gw.port}/v1/audio/transcriptions", data={"model": BASE}, files=files)
        ref = d.post(vllm.a.url + "/v1/audio/transcriptions", data={"model": BASE}, files=files)
        assert via.status_code == ref.status_code and strip(via.content) == strip(ref.content)
