#!/usr/bin/env python3
"""Captures verbatim answers of a real vLLM 0.32 CPU server (../shared/vllm-cpu) for the
endpoints `sluice sim` imitates beyond ../shared/vllm-reference/. Run once by hand; the
files it writes here are what Tests/SluiceSimTests compares the simulator with.

    VLLM_ENABLE_RESPONSES_API_STORE=1 ../shared/vllm-cpu/ctl.sh start 18111
    python Tests/vllm-captures/capture.py generate 18111     # -> generate-*.txt
    ../shared/vllm-cpu/ctl.sh start 18112 --runner pooling --convert classify --hf-overrides '{"num_labels": 1}'
    python Tests/vllm-captures/capture.py pooling 18112      # -> pooling-*.txt

Each file holds one or more exchanges: `### METHOD PATH BODY`, then the status line, the
response fields and the body exactly as received (chunked framing removed).
"""
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def exchange(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    h = {"content-type": "application/json"} if isinstance(body, (dict, list)) else {}
    h.update(headers or {})
    raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    c.request(method, path, body=raw, headers=h)
    r = c.getresponse()
    data = r.read()
    head = f"HTTP/1.1 {r.status} {r.reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.getheaders() if k.lower() != "date")
    c.close()
    return r.status, head, data


class Recorder:
    def __init__(self, port, prefix):
        self.port, self.prefix = port, prefix

    def save(self, name, title, method, path, body=None, headers=None):
        status, head, data = exchange(self.port, method, path, body, headers)
        if isinstance(body, bytes):
            shown = f"<multipart, {len(body)} bytes>"
        else:
            shown = body if isinstance(body, str) or body is None else json.dumps(body)
        text = f"### {title}\n### {method} {path} {shown or ''}\n{head}\r\n".encode() + data + b"\n"
        with open(os.path.join(HERE, f"{self.prefix}-{name}.txt"), "ab") as f:
            f.write(text)
        return status, data


def multipart(fields, files):
    boundary = "sluiceboundary7MA4YWxkTrZu0gW"
    out = b""
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    for k, (fn, data, ct) in files.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fn}"\r\nContent-Type: {ct}\r\n\r\n'.encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, {"content-type": f"multipart/form-data; boundary={boundary}"}


def generate(port):
    r = Recorder(port, "generate")
    hello = [{"role": "user", "content": "Hello there, how are you today?"}]
    # Anthropic Messages
    r.save("messages", "non-streaming", "POST", "/v1/messages",
           {"model": "tiny-llama", "max_tokens": 8, "temperature": 0, "messages": hello})
    r.save("messages", "system as blocks, metadata", "POST", "/v1/messages",
           {"model": "tiny-llama", "max_tokens": 4, "temperature": 0, "system": [{"type": "text", "text": "Be brief."}],
            "metadata": {"user_id": "u-1"}, "messages": hello})
    r.save("messages-stream", "streaming", "POST", "/v1/messages",
           {"model": "tiny-llama", "max_tokens": 5, "temperature": 0, "stream": True, "system": "Be brief.", "messages": hello})
    r.save("messages-count-tokens", "count_tokens", "POST", "/v1/messages/count_tokens",
           {"model": "tiny-llama", "system": "Be brief.", "messages": hello})
    r.save("messages-errors", "unknown model", "POST", "/v1/messages",
           {"model": "nope", "max_tokens": 8, "messages": hello})
    r.save("messages-errors", "missing max_tokens", "POST", "/v1/messages", {"model": "tiny-llama", "messages": hello})
    r.save("messages-errors", "max_tokens 0", "POST", "/v1/messages", {"model": "tiny-llama", "max_tokens": 0, "messages": hello})
    r.save("messages-errors", "missing model", "POST", "/v1/messages", {"max_tokens": 8, "messages": hello})
    r.save("messages-errors", "invalid JSON", "POST", "/v1/messages", '{"model": "tiny-llama",', {"content-type": "application/json"})
    r.save("messages-errors", "count_tokens unknown model", "POST", "/v1/messages/count_tokens", {"model": "nope", "messages": hello})
    # Responses API
    st, body = r.save("responses", "non-streaming", "POST", "/v1/responses",
                      {"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 8, "temperature": 0})
    first = json.loads(body)["id"]
    r.save("responses", "input items, instructions, previous_response_id", "POST", "/v1/responses",
           {"model": "tiny-llama", "instructions": "Be brief.", "previous_response_id": first, "max_output_tokens": 4, "temperature": 0,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "And then?"}]}]})
    r.save("responses", "retrieve", "GET", f"/v1/responses/{first}")
    r.save("responses", "cancel a finished (synchronous) response", "POST", f"/v1/responses/{first}/cancel")
    r.save("responses", "without model", "POST", "/v1/responses", {"input": "Hi", "max_output_tokens": 2})
    r.save("responses-stream", "streaming", "POST", "/v1/responses",
           {"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 4, "temperature": 0, "stream": True})
    r.save("responses-errors", "retrieve unknown", "GET", "/v1/responses/resp_0123456789abcdef0123456789abcdef")
    r.save("responses-errors", "cancel unknown", "POST", "/v1/responses/resp_0123456789abcdef0123456789abcdef/cancel")
    r.save("responses-errors", "previous_response_id unknown", "POST", "/v1/responses",
           {"model": "tiny-llama", "input": "x", "previous_response_id": "resp_0123456789abcdef0123456789abcdef"})
    r.save("responses-errors", "unknown model", "POST", "/v1/responses", {"model": "nope", "input": "x"})
    st, body = r.save("responses-background", "background", "POST", "/v1/responses",
                      {"model": "tiny-llama", "input": "Hello there", "max_output_tokens": 64, "background": True})
    try:
        bid = json.loads(body)["id"]
        r.save("responses-background", "cancel while running", "POST", f"/v1/responses/{bid}/cancel")
        time.sleep(0.5)
        r.save("responses-background", "retrieve after cancel", "GET", f"/v1/responses/{bid}")
    except Exception as e:  # noqa: BLE001
        print("background:", e)
    # chat without model; tokenize / detokenize
    r.save("chat-without-model", "chat without model", "POST", "/v1/chat/completions", {"messages": hello, "max_tokens": 2})
    st, body = r.save("tokenize", "prompt", "POST", "/tokenize", {"model": "tiny-llama", "prompt": "Hello world"})
    r.save("tokenize", "messages", "POST", "/tokenize", {"model": "tiny-llama", "messages": hello})
    r.save("tokenize", "without model", "POST", "/tokenize", {"prompt": "Hello"})
    tokens = json.loads(body).get("tokens", [1, 2, 3])
    r.save("tokenize", "detokenize", "POST", "/detokenize", {"model": "tiny-llama", "tokens": tokens})
    r.save("tokenize", "detokenize unknown model", "POST", "/detokenize", {"model": "nope", "tokens": tokens})
    # what a generative server says to the other APIs
    for path, b in [("/v1/rerank", {"model": "tiny-llama", "query": "q", "documents": ["a", "b"]}),
                    ("/score", {"model": "tiny-llama", "text_1": "a", "text_2": "b"}),
                    ("/pooling", {"model": "tiny-llama", "input": "a"}),
                    ("/classify", {"model": "tiny-llama", "input": "a"}),
                    ("/v2/models/tiny-llama/infer", {"inputs": []})]:
        r.save("unsupported", path, "POST", path, b)
    for path in ["/v2/models/tiny-llama", "/v2/health/ready", "/v1/realtime"]:
        r.save("unsupported", path, "GET", path)
    body, h = multipart({"model": "tiny-llama", "language": "en"}, {"file": ("a.wav", b"RIFF\x00\x00\x00\x00WAVE", "audio/wav")})
    r.save("unsupported", "transcriptions", "POST", "/v1/audio/transcriptions", body, h)


def pooling(port):
    r = Recorder(port, "pooling")
    r.save("rerank", "/v1/rerank", "POST", "/v1/rerank",
           {"model": "tiny-llama", "query": "What is a gateway?", "documents": ["A gateway routes requests.", "Bananas are yellow.", "Cats sleep."], "top_n": 2})
    r.save("rerank", "/rerank", "POST", "/rerank", {"model": "tiny-llama", "query": "q", "documents": ["a", "b"]})
    r.save("rerank", "/v2/rerank", "POST", "/v2/rerank", {"model": "tiny-llama", "query": "q", "documents": ["a", "b"]})
    r.save("rerank", "without model", "POST", "/v1/rerank", {"query": "q", "documents": ["a"]})
    r.save("score", "/score text_1/text_2", "POST", "/score", {"model": "tiny-llama", "text_1": "What is a gateway?", "text_2": ["A gateway routes.", "Bananas."]})
    r.save("score", "/v1/score queries/documents", "POST", "/v1/score", {"model": "tiny-llama", "queries": "q", "documents": ["a", "b"]})
    r.save("classify", "/classify", "POST", "/classify", {"model": "tiny-llama", "input": ["Loved it", "Hated it"]})
    r.save("pooling", "/pooling", "POST", "/pooling", {"model": "tiny-llama", "input": "Hello world"})
    r.save("pooling", "/pooling task classify", "POST", "/pooling", {"model": "tiny-llama", "input": "Hello world", "task": "classify"})
    r.save("tokenize", "/tokenize on a pooling server", "POST", "/tokenize", {"model": "tiny-llama", "prompt": "Hello world"})
    r.save("errors", "rerank unknown model", "POST", "/v1/rerank", {"model": "nope", "query": "q", "documents": ["a"]})
    r.save("errors", "chat on a pooling server", "POST", "/v1/chat/completions", {"model": "tiny-llama", "messages": [{"role": "user", "content": "x"}]})


if __name__ == "__main__":
    {"generate": generate, "pooling": pooling}[sys.argv[1]](int(sys.argv[2]))
