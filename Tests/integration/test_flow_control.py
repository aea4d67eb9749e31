"""Issue 25: flow control. A pool whose endpoints are all saturated queues requests in the
gateway (per priority band, per tenant, fairly), bounded in time (queue_ttl: 503 + Retry-After)
and size (429 for a tenant's share, 503 for the pool's); a client that leaves is taken out at
once; a pool with no endpoint holds requests until one appears; `sheddable` is refused at once
while saturated; `x-sluice-priority` only from keys allowed to set it.

The upstream is `sluice sim` with `--max-num-seqs 1`: one request runs, the next waits there,
and the gateway learns the endpoint's concurrency from its /metrics (running while requests
wait) within a scrape or two."""
import json
import re
import socket
import threading
import time
import urllib.request

import httpx
import pytest

from conftest import SLUICE, Proc, free_port, wait_port
from test_http2 import h2conn, headers

MODEL = "tiny-llama"


def metric(port, name, labels=None):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if labels and not all(f'{k}="{v}"' in line for k, v in labels.items()):
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def slow_sim():
    """A simulated vLLM that runs one sequence at a time."""
    port = free_port()
    p = Proc([SLUICE, "sim", "--port", str(port), "--model", MODEL, "--max-num-seqs", "1", "--max-model-len", "8192"])
    wait_port(port)
    yield port
    p.stop()


def config(upstream, flow=None, extra=""):
    flow = flow or {}
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 2
timeouts: {{ drain_delay: 0s }}
telemetry: {{ interval: 20ms, staleness: 2s }}
health: {{ interval: 0 }}
flow_control: {json.dumps(flow)}
pools:
  - name: p
    endpoints: {"[]" if upstream is None else f"[http://127.0.0.1:{upstream}]"}
{extra}
"""


def chat(max_tokens=200, **extra):
    return {"model": MODEL, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": max_tokens, **extra}


def post(port, body, headers=None, timeout=60):
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers or {}, timeout=timeout)


def learn_capacity(gw, sim_port, headers=None):
    """Saturates the endpoint until the gateway has learned its concurrency (1): two requests
    at once, one runs and one waits at the model server, and a scrape sees it."""
    threads = [threading.Thread(target=post, args=(gw.port, chat(400), headers)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def busy(gw, n, max_tokens=600, headers=None):
    """n long requests in the background; returns their threads and results."""
    results = []

    def one():
        try:
            results.append(post(gw.port, chat(max_tokens), headers).status_code)
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def hold_the_endpoint(gw, max_tokens=2000, headers=None):
    """A long request holding the endpoint's one slot, then a short one that takes the probe
    (one request more than the learned capacity, offered while the endpoint runs at it with
    nothing waiting there, then not again for 10 s: PoolFlow's room): from then on, requests
    queue in the gateway. Returns both requests' threads."""
    before = metric(gw.admin_port, "sluice_upstream_requests_total") or 0
    hold, _ = busy(gw, 1, max_tokens=max_tokens, headers=headers)
    assert wait_for(lambda: metric(gw.admin_port, "sluice_upstream_requests_total") >= before + 1, 5)
    probe, _ = busy(gw, 1, max_tokens=5, headers=headers)
    assert wait_for(lambda: metric(gw.admin_port, "sluice_upstream_requests_total") >= before + 2, 5), "no probe"
    time.sleep(0.2)  # a scrape sees it waiting there: the probe is withdrawn
    return hold + probe


def wait_for(predicate, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_saturated_pool_queues_and_dispatches(slow_sim, sluice):
    gw = sluice(config(slow_sim))
    learn_capacity(gw, slow_sim)
    threads, results = busy(gw, 4)
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) >= 2), "nothing queued in the gateway"
    for t in threads:
        t.join()
    assert results == [200] * 4, results
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "dispatched"}) >= 2
    assert metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 0
    assert gw.p.poll() is None


def test_queue_ttl_expires_with_retry_after(slow_sim, sluice):
    gw = sluice(config(slow_sim, {"queue_ttl": "700ms"}))
    learn_capacity(gw, slow_sim)
    threads = hold_the_endpoint(gw)
    started = time.time()
    r = post(gw.port, chat(10))
    waited = time.time() - started
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "overloaded"
    assert int(r.headers["retry-after"]) >= 1
    assert 0.5 < waited < 3.0, waited
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "expired"}) == 1
    for t in threads:
        t.join()


def test_queue_bounds_per_tenant_and_pool(slow_sim, sluice):
    gw = sluice(config(slow_sim, {"max_queued": 2, "max_queued_per_tenant": 1, "queue_ttl": "20s"}))
    learn_capacity(gw, slow_sim)
    hold = hold_the_endpoint(gw, max_tokens=3000, headers={"Authorization": "Bearer holder"})
    a1, ra = busy(gw, 1, max_tokens=5, headers={"Authorization": "Bearer a"})
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 1)
    # A's share (1) is taken: A's second request gets 429.
    r = post(gw.port, chat(5), {"Authorization": "Bearer a"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full" and "retry-after" in r.headers, r.text
    b1, rb = busy(gw, 1, max_tokens=5, headers={"Authorization": "Bearer b"})
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 2)
    # The pool's bound (2) is full: C gets 503.
    r = post(gw.port, chat(5), {"Authorization": "Bearer c"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded" and "retry-after" in r.headers, r.text
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "rejected_tenant"}) == 1
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "rejected_pool"}) == 1
    for t in hold + a1 + b1:
        t.join()
    assert ra == [200] and rb == [200], (ra, rb)


@pytest.mark.parametrize("http2", [False, True])
def test_a_client_that_leaves_is_taken_out_at_once(slow_sim, sluice, http2):
    gw = sluice(config(slow_sim, {"queue_ttl": "20s"}))
    learn_capacity(gw, slow_sim)
    hold = hold_the_endpoint(gw)
    body = json.dumps(chat(5)).encode()
    if http2:
        s, c = h2conn(gw.port)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, headers(gw.port, "/v1/chat/completions", "POST") + [("content-type", "application/json")])
        c.send_data(sid, body, end_stream=True)
        s.sendall(c.data_to_send())
    else:
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 1, 5), "not queued"
    s.close()  # the client gives up
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 0, 3), "still queued"
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "abandoned"}) == 1
    sent_before = metric(gw.admin_port, "sluice_upstream_requests_total")
    for t in hold:
        t.join()
    time.sleep(0.3)
    # Nothing was sent for it once capacity came back.
    assert metric(gw.admin_port, "sluice_upstream_requests_total") == sent_before


def test_scale_from_zero_serves_a_held_request(slow_sim, sluice, tmp_path):
    gw = sluice(config(None, {"queue_ttl": "20s"}))
    result = {}

    def one():
        result["r"] = post(gw.port, chat(5), timeout=30)

    t = threading.Thread(target=one)
    t.start()
    assert wait_for(lambda: metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 1, 5), "not held"
    # An endpoint appears (here by a reload; DNS discovery does the same without one).
    gw.config.write_text(config(slow_sim, {"queue_ttl": "20s"}).replace("ADMIN_PORT", str(gw.admin_port)).replace("PORT", str(gw.port)))
    t.join(25)
    assert not t.is_alive()
    assert result["r"].status_code == 200, result["r"].text
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "dispatched"}) == 1


KEYS = """
auth:
  api_keys:
    - { key: plain, tenant: a }
    - { key: chooser, tenant: b, allow_priority_header: true }
    - { key: batch, tenant: c, priority: sheddable }
"""


def test_priority_header_needs_a_key_allowed_to_set_it(slow_sim, sluice):
    gw = sluice(config(slow_sim, extra=KEYS))
    r = post(gw.port, chat(5), {"Authorization": "Bearer plain", "x-sluice-priority": "critical"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "priority_not_allowed", r.text
    r = post(gw.port, chat(5), {"Authorization": "Bearer chooser", "x-sluice-priority": "critical"})
    assert r.status_code == 200, r.text
    r = post(gw.port, chat(5), {"Authorization": "Bearer chooser", "x-sluice-priority": "urgent"})
    assert r.status_code == 400, r.text


def test_sheddable_is_refused_at_once_while_saturated(slow_sim, sluice):
    gw = sluice(config(slow_sim, {"queue_ttl": "20s"}, extra=KEYS))
    learn_capacity(gw, slow_sim, {"Authorization": "Bearer plain"})
    # Not saturated: sheddable goes through.
    assert post(gw.port, chat(5), {"Authorization": "Bearer batch"}).status_code == 200
    hold, _ = busy(gw, 1, max_tokens=2000, headers={"Authorization": "Bearer plain"})
    time.sleep(0.3)
    started = time.time()
    r = post(gw.port, chat(5), {"Authorization": "Bearer batch"})
    assert r.status_code == 503 and time.time() - started < 0.5, (r.status_code, r.text)
    r = post(gw.port, chat(5), {"Authorization": "Bearer chooser", "x-sluice-priority": "sheddable"})
    assert r.status_code == 503
    assert metric(gw.admin_port, "sluice_queue_requests_total", {"pool": "p", "outcome": "shed"}) == 2
    for t in hold:
        t.join()


def test_off_means_no_queue(slow_sim, sluice):
    gw = sluice(config(slow_sim, {"enabled": False}))
    learn_capacity(gw, slow_sim)
    threads, results = busy(gw, 3)
    time.sleep(0.3)
    assert metric(gw.admin_port, "sluice_queue_length", {"pool": "p"}) == 0
    for t in threads:
        t.join()
    assert results == [200] * 3
