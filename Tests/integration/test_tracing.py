"""OpenTelemetry trace export against the release binary (issue 28), with a real OTLP decoder
(`opentelemetry-proto` in a small HTTP receiver, otlp_receiver.py).

The exporter, the encoder and the recorders are tested without a gateway in Swift
(Tests/SluiceTracingTests, which run the same receiver); here the request path's spans reach a
collector from the release binary."""
import json
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import SLUICE, free_port, wait_port
from otlp_receiver import Receiver

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto is not installed (bash .ci/setup installs it)")

API_KEY = "sk-trace-secret-0123456789"
PROMPT = "The prompt text must never appear in a span: 7f3a9c"


def config(upstream_port, collector_port, extra=""):
    return f"""
listen: [{{address: "127.0.0.1:PORT"}}]
admin: {{address: "127.0.0.1:ADMIN_PORT"}}
workers: 1
telemetry: {{interval: 0}}
health: {{interval: 0}}
pools: [{{name: main, endpoints: ["http://127.0.0.1:{upstream_port}"]}}]
models: [{{name: tiny, pool: main}}]
tracing:
  endpoint: "http://127.0.0.1:{collector_port}"
  sample_ratio: 1
  export_interval: 100ms
  export_timeout: 500ms
{extra}"""


def chat(port, traceparent=None, key=API_KEY):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    if traceparent:
        headers["traceparent"] = traceparent
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()


def metric(admin_port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_validate_reads_the_tracing_section(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("pools: [{name: p, endpoints: ['http://127.0.0.1:8000']}]\n"
                    "tracing: {endpoint: 'http://collector.observability:4318', sample_ratio: 0.05, max_queue_size: 2048}\n")
    r = subprocess.run([SLUICE, "validate", "--offline", str(good)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("pools: [{name: p, endpoints: ['http://127.0.0.1:8000']}]\n"
                   "tracing: {endpoint: 'https://collector:4318', sample_ratio: 2, sampler: always}\n")
    r = subprocess.run([SLUICE, "validate", "--offline", str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    for problem in ["tracing.endpoint:", "tracing.sample_ratio: must be between 0 and 1", "tracing.sampler: unknown key"]:
        assert problem in r.stdout, r.stdout


def test_collector_down_keeps_serving(sluice, nginx_upstream):
    p = sluice(config(nginx_upstream, dead_port()))
    start = time.time()
    for i in range(50):
        assert chat(p.port, traceparent=f"00-{i + 1:032x}-00f067aa0ba902b7-01")[0] == 200
    assert time.time() - start < 10
    wait_port(p.admin_port)
    assert metric(p.admin_port, "sluice_trace_spans_exported_total") == 0
    assert p.p.poll() is None


def test_collector_down_counts_dropped_spans(sluice, nginx_upstream):
    p = sluice(config(nginx_upstream, dead_port()))
    for _ in range(20):
        assert chat(p.port)[0] == 200
    end = time.time() + 5
    while time.time() < end and not metric(p.admin_port, 'sluice_trace_spans_dropped_total{reason="export_failed"}'):
        time.sleep(0.1)
    assert metric(p.admin_port, 'sluice_trace_spans_dropped_total{reason="export_failed"}') >= 20
    assert metric(p.admin_port, "sluice_trace_export_failures_total") >= 1


def test_request_spans_continue_the_clients_trace(sluice, py_upstream):
    with Receiver() as collector:
        p = sluice(config(py_upstream.server_address[1], collector.port))
        trace, client_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        assert chat(p.port, traceparent=f"00-{trace}-{client_span}-01")[0] == 200
        spans = collector.wait_spans(3)
        assert not collector.errors
        assert len(spans) >= 3, spans  # the request, its routing decision, its upstream attempt
        assert {s["trace_id"] for s in spans} == {trace}
        server = [s for s in spans if s["kind"] == 2]
        assert len(server) == 1
        server = server[0]
        assert server["parent_span_id"] == client_span
        children = [s for s in spans if s is not server]
        assert all(c["parent_span_id"] == server["span_id"] for c in children)
        assert any(c["kind"] == 3 for c in children), "an upstream attempt (client span)"
        a = server["attributes"]
        assert a["gen_ai.request.model"] == "tiny"
        assert a["gen_ai.response.model"] == "tiny"
        assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == 2
        assert a["sluice.pool"] == "main"
        assert a["http.response.status_code"] == 200
        # The model server sees the gateway's span as the parent, in the same trace, sampled.
        sent = dict((k.lower(), v) for k, v in py_upstream.seen[-1][1].items())
        assert sent["traceparent"].startswith(f"00-{trace}-") and sent["traceparent"].endswith("-01")
        assert sent["traceparent"].split("-")[2] in {s["span_id"] for s in spans}
        # Nothing secret anywhere: no API key, no prompt text, no Authorization value.
        dump = json.dumps(spans)
        assert API_KEY not in dump and "7f3a9c" not in dump and "Bearer" not in dump


def test_errors_are_sampled_at_ratio_zero(sluice):
    with Receiver() as collector:
        p = sluice(config(dead_port(), collector.port).replace("sample_ratio: 1", "sample_ratio: 0"))
        try:
            chat(p.port)
        except urllib.error.HTTPError as e:
            assert e.code in (502, 503)
        spans = collector.wait_spans(1)
        assert spans and any(s["status"]["code"] == 2 for s in spans)
        before = len(spans)
        # ... and a request that succeeds is not.
        assert before == len(collector.wait_spans(before + 1, timeout=1))
