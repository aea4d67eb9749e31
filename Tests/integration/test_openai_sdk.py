"""Issue 3: the real openai Python SDK against `sluice sim` directly and through Sluice
(`sluice demo` setup: simulated servers behind the gateway)."""
import subprocess
import time

import openai
import pytest

from conftest import SLUICE, Proc, demo_ports, wait_port


@pytest.fixture(scope="module")
def demo():
    # Free ports for the simulated servers and the admin listener too: the defaults (18001...,
    # port + 1010) may be taken by another demo on the same machine.
    port, admin, sim = demo_ports(2)
    p = Proc([SLUICE, "demo", "--port", str(port), "--servers", "2", "--sim-port", str(sim), "--admin", f"127.0.0.1:{admin}"])
    try:
        wait_port(port)
        wait_port(sim)
    except Exception:
        p.stop()
        raise
    p.port, p.sim = port, sim
    yield p
    assert p.stop() == 0


def client(port):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("through_sluice", [False, True])
def test_chat_completions_and_streaming(demo, through_sluice):
    c = client(demo.port if through_sluice else demo.sim)
    r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hello"}], max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    chunks = list(c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hi"}],
                                            max_tokens=4, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.strip()
    # Without include_usage the client sees no usage chunk (Sluice strips the one it requested).
    assert all(ch.usage is None for ch in chunks)
    with_usage = list(c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert with_usage[-1].usage.completion_tokens == 4 and with_usage[-1].choices == []


@pytest.mark.parametrize("through_sluice", [False, True])
def test_completions_embeddings_models(demo, through_sluice):
    c = client(demo.port if through_sluice else demo.sim)
    r = c.completions.create(model="tiny-llama", prompt="Once upon a time", max_tokens=3)
    assert r.usage.completion_tokens == 3 and r.choices[0].text
    e = c.embeddings.create(model="tiny-llama", input="hello")
    assert len(e.data[0].embedding) > 0
    ids = [m.id for m in c.models.list()]
    assert "tiny-llama" in ids


def test_errors_in_openai_shape(demo):
    c = client(demo.port)
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        c.chat.completions.create(model="tiny-llama", messages="not a list")


def test_lora_model_and_parent(demo):
    c = client(demo.port)
    models = {m.id: m for m in c.models.list()}
    assert "sql" in models
    r = c.chat.completions.create(model="sql", messages=[{"role": "user", "content": "tables?"}], max_tokens=2)
    assert r.model == "sql-lora"
