"""Issue 27: the real clients against `sluice sim` directly (the through-the-gateway versions
follow once the gateway routes these paths): the anthropic SDK (messages, streaming,
count_tokens), the openai SDK's Responses API (create, stream, previous_response_id, retrieve,
cancel) and audio upload, a websockets client on /v1/realtime, and plain HTTP for rerank, score,
tokenize and KServe v2. Each response is parsed by the client's own types, so a shape the SDK
does not accept fails here."""
import json

import anthropic
import httpx
import openai
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import SLUICE, Proc, free_port, wait_port


@pytest.fixture(scope="module")
def sims():
    """Two simulated servers (tiny-llama with adapter a1); yields their ports."""
    ports, procs = [], []
    for _ in range(2):
        port = free_port()
        procs.append(Proc([SLUICE, "sim", "--port", str(port), "--model", "tiny-llama", "--lora", "a1", "--time-scale", "0.2"]))
        ports.append(port)
    for p in ports:
        wait_port(p)
    yield ports
    for p in procs:
        assert p.stop() == 0


def oai(port):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


def claude(port):
    return anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}", api_key="unused", max_retries=0)


HELLO = [{"role": "user", "content": "Hello there, how are you today?"}]


def test_anthropic_messages(sims):
    c = claude(sims[0])
    m = c.messages.create(model="tiny-llama", max_tokens=8, system="Be brief.", messages=HELLO, metadata={"user_id": "u-1"})
    assert m.type == "message" and m.role == "assistant" and m.model == "tiny-llama"
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 8 and m.usage.input_tokens > 0
    assert m.content[0].type == "text" and m.content[0].text
    # Same prompt, same text (greedy-like), through the adapter too.
    assert c.messages.create(model="tiny-llama", max_tokens=8, system="Be brief.", messages=HELLO).content[0].text == m.content[0].text
    assert c.messages.create(model="a1", max_tokens=2, messages=HELLO).model == "a1"


def test_anthropic_streaming(sims):
    c = claude(sims[0])
    with c.messages.stream(model="tiny-llama", max_tokens=6, messages=HELLO) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens == 6 and final.usage.input_tokens > 0
    assert final.stop_reason == "max_tokens"
    # The raw events, in Anthropic's order.
    kinds = [e.type for e in c.messages.create(model="tiny-llama", max_tokens=3, messages=HELLO, stream=True)]
    assert kinds == ["message_start", "content_block_start"] + ["content_block_delta"] * 3 + ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_count_tokens_and_errors(sims):
    c = claude(sims[0])
    n = c.messages.count_tokens(model="tiny-llama", system="Be brief.", messages=HELLO)
    assert n.input_tokens > 0
    assert c.messages.count_tokens(model="tiny-llama", messages=HELLO).input_tokens < n.input_tokens
    with pytest.raises(anthropic.NotFoundError) as e:
        c.messages.create(model="nope", max_tokens=8, messages=HELLO)
    assert e.value.body["type"] == "error" and "does not exist" in e.value.body["error"]["message"]


def test_responses_create_follow_up_retrieve(sims):
    c = oai(sims[0])
    r = c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=8, temperature=0)
    assert r.id.startswith("resp_") and r.object == "response" and r.output_text
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 8 and r.usage.total_tokens == r.usage.input_tokens + 8
    f = c.responses.create(model="tiny-llama", previous_response_id=r.id, instructions="Be brief.",
                           input=[{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}], max_output_tokens=4)
    assert f.previous_response_id == r.id and f.usage.input_tokens > r.usage.input_tokens
    got = c.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    # The state lives on the server that made it: the other one does not know the id.
    other = oai(sims[1])
    with pytest.raises(openai.NotFoundError) as e:
        other.responses.retrieve(r.id)
    assert e.value.body["message"] == f"Response with id '{r.id}' not found."
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="tiny-llama", previous_response_id=r.id, input="x")
    with pytest.raises(openai.BadRequestError):
        c.responses.cancel(r.id)


def test_responses_stream(sims):
    c = oai(sims[0])
    events = list(c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=4, stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 4
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.usage.output_tokens == 4 and done.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert c.responses.retrieve(done.id).output_text == done.output_text


def test_responses_background_cancel(sims):
    port = free_port()
    slow = Proc([SLUICE, "sim", "--port", str(port), "--model", "tiny-llama", "--time-scale", "20"])
    try:
        wait_port(port)
        c = oai(port)
        r = c.responses.create(model="tiny-llama", input="Hello there", max_output_tokens=64, background=True)
        assert r.status == "queued"
        x = c.responses.cancel(r.id)
        assert x.status == "cancelled" and c.responses.retrieve(r.id).status == "cancelled"
        with pytest.raises(openai.NotFoundError):
            c.responses.cancel("resp_0123456789abcdef")
    finally:
        assert slow.stop() == 0


def test_audio_transcription(sims):
    c = oai(sims[0])
    t = c.audio.transcriptions.create(model="tiny-llama", file=("a.wav", b"RIFF" + bytes(64_000), "audio/wav"), language="en")
    assert t.text == "The quick brown fox jumps over the lazy dog."
    assert c.audio.translations.create(model="tiny-llama", file=("a.wav", b"RIFF" + bytes(100))).text == t.text
    with pytest.raises(openai.NotFoundError):
        c.audio.transcriptions.create(model="nope", file=("a.wav", b"RIFF"))


def test_realtime_websocket(sims):
    with connect(f"ws://127.0.0.1:{sims[0]}/v1/realtime?model=tiny-llama", open_timeout=5) as ws:
        hello = json.loads(ws.recv(timeout=5))
        assert hello["type"] == "session.created" and hello["id"].startswith("sess-")
        event = json.dumps({"type": "input_audio_buffer.append", "audio": "AAAA"})
        ws.send(event)
        assert ws.recv(timeout=5) == event
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=5) == b"\x00\x01\xff"
        ws.send("x" * 70_000)
        assert ws.recv(timeout=5) == "x" * 70_000
        assert ws.ping(b"p").wait(5)
    with pytest.raises(InvalidStatus) as e:
        connect(f"ws://127.0.0.1:{sims[0]}/v1/realtime?model=nope", open_timeout=5)
    assert e.value.response.status_code == 404


def test_rerank_score_tokenize(sims):
    base = f"http://127.0.0.1:{sims[0]}"
    with httpx.Client(timeout=10) as h:
        r = h.post(base + "/v1/rerank", json={"model": "tiny-llama", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}).json()
        assert len(r["results"]) == 2 and r["usage"]["prompt_tokens"] > 0
        assert h.post(base + "/rerank", json={"query": "q", "documents": ["a", "b", "c"], "top_n": 2}).json()["results"] == r["results"]
        s = h.post(base + "/score", json={"text_1": "q", "text_2": ["a", "b"]}).json()
        assert [d["object"] for d in s["data"]] == ["score", "score"]
        t = h.post(base + "/tokenize", json={"model": "tiny-llama", "prompt": "Hello world"}).json()
        assert h.post(base + "/detokenize", json={"tokens": t["tokens"]}).json() == {"prompt": "Hello world"}
        assert h.post(base + "/classify", json={"input": ["x"]}).json()["data"][0]["label"] == "LABEL_0"
        assert h.post(base + "/pooling", json={"input": "x"}).json()["data"][0]["object"] == "pooling"


def test_kserve_v2(sims):
    base = f"http://127.0.0.1:{sims[0]}"
    with httpx.Client(timeout=10) as h:
        assert h.get(base + "/v2/health/live").status_code == 200
        assert h.get(base + "/v2/models/a1/ready").json() == {"name": "a1", "ready": True}
        body = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["Hello"]}], "parameters": {"max_tokens": 3}}
        r = h.post(base + "/v2/models/tiny-llama/infer", json=body).json()
        assert r["model_name"] == "tiny-llama" and r["outputs"][0]["data"][0]
        assert h.post(base + "/v2/models/nope/infer", json=body).status_code == 404
