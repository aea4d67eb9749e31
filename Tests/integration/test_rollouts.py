"""Issue 26 end to end against `sluice sim` pools: per model-and-arm metrics, the SLO guard
rolling back a canary that fails or is slow (and not a healthy one), the admin API, shadow
copies and fallback chains, over HTTP/1.1 and HTTP/2 (h2c with prior knowledge)."""
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import httpx
import pytest

from conftest import SLUICE, Proc, free_port, wait_port


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


def admin_json(port, path, token=None, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return json.loads(urllib.request.urlopen(req, timeout=5).read())


def wait_for(predicate, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def sims():
    """Starts `sluice sim` servers: sims(model, *flags) -> port."""
    procs = []

    def start(model, *flags):
        port = free_port()
        p = Proc([SLUICE, "sim", "--port", str(port), "--model", model, "--time-scale", "0.01", *flags])
        procs.append(p)
        wait_port(port)
        p.port = port
        return port

    yield start
    for p in procs:
        p.stop()


def gateway_config(pools, models, extra="", health="{ interval: 0 }", flow="false"):
    """Flow control is off by default here: main's flow control now and then holds a lone
    request for the whole queue_ttl (30 s, then 503) with an idle pool (seen with the main
    binary alone; reported, not fixed here). The fallback test with a down pool runs with it on."""
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 2
timeouts: {{ drain_delay: 0s }}
flow_control: {{ enabled: {flow} }}
health: {health}
pools:
{pools}
models:
{models}
{extra}
"""


def client(http2, timeout=30):
    return httpx.Client(http1=not http2, http2=http2, timeout=timeout)


def chat(model, stream=False, **extra):
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4, "stream": stream, **extra}


def canary_config(stable, canary, guard):
    return gateway_config(
        f"""  - {{ name: stable, endpoints: ["http://127.0.0.1:{stable}"] }}
  - {{ name: canary, endpoints: ["http://127.0.0.1:{canary}"] }}""",
        f"""  - {{ name: chat-v1, pool: stable, upstream_model: m }}
  - {{ name: chat-v2, pool: canary, upstream_model: m }}
  - name: chat
    split: [{{ model: chat-v1, weight: 50 }}, {{ model: chat-v2, weight: 50 }}]
    guard: {guard}""",
        # Passive ejection off: what reacts to the canary's errors here is the guard.
        health="{ interval: 0, unhealthy_threshold: 100000 }")


def test_per_arm_metrics_are_exact(sims, sluice):
    a, b = sims("m"), sims("m")
    gw = sluice(gateway_config(
        f"""  - {{ name: pa, endpoints: ["http://127.0.0.1:{a}"] }}
  - {{ name: pb, endpoints: ["http://127.0.0.1:{b}"] }}""",
        """  - { name: v1, pool: pa, upstream_model: m }
  - { name: v2, pool: pa, upstream_model: m }
  - { name: solo, pool: pb, upstream_model: m }
  - name: chat
    split: [{ model: v1, weight: 1 }, { model: v2, weight: 1 }]""",
        """auth:
  api_keys:
    - { key: k-alpha, tenant: alpha }
    - { key: k-beta, tenant: beta }"""))
    arms = {"v1": 0, "v2": 0}
    with client(False) as c:
        for i in range(40):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", stream=i % 2 == 0),
                       headers={"Authorization": "Bearer k-alpha"})
            assert r.status_code == 200
            arms[r.headers["x-sluice-arm"]] += 1
        for _ in range(5):
            assert c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("solo"),
                          headers={"Authorization": "Bearer k-beta"}).status_code == 200
        # A 404 for an unknown model counts nowhere in the model families.
        assert c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("nope"),
                      headers={"Authorization": "Bearer k-beta"}).status_code == 404
    assert arms["v1"] > 0 and arms["v2"] > 0
    ap = gw.admin_port
    for arm, n in arms.items():
        assert metric(ap, "sluice_model_responses_total", {"model": "chat", "arm": arm, "code_class": "2xx"}) == n
        assert metric(ap, "sluice_model_request_duration_seconds_count", {"model": "chat", "arm": arm}) == n
        # The sim answers 4 completion tokens each.
        assert metric(ap, "sluice_model_tokens_total", {"model": "chat", "arm": arm, "type": "output"}) == 4 * n
    assert metric(ap, "sluice_model_responses_total", {"model": "solo", "arm": "", "code_class": "2xx"}) == 5
    # TTFT as the pool's series counts it (streams at least), split between the arms.
    ttft = [metric(ap, "sluice_model_time_to_first_token_seconds_count", {"model": "chat", "arm": a}) for a in arms]
    assert sum(ttft) == metric(ap, "sluice_time_to_first_token_seconds_count", {"pool": "pa"}) >= 20
    assert all(t > 0 for t in ttft)
    assert metric(ap, "sluice_model_inter_token_latency_seconds_count", {"model": "chat"}) > 0
    assert metric(ap, "sluice_tenant_tokens_total", {"tenant": "alpha", "type": "output"}) == 160
    assert metric(ap, "sluice_tenant_tokens_total", {"tenant": "beta", "type": "output"}) == 20
    assert metric(ap, "sluice_tenant_tokens_total", {"tenant": "alpha", "type": "input"}) > 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{ap}/metrics", timeout=5).read()
    assert b'model="nope"' not in text
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
        assert r.returncode == 0, (r.stdout + r.stderr).decode()[:2000]


def drive(port, http2, stop, seen, model="chat", headers=None):
    """Sends requests (streams: TTFT is measured on them) in a loop until `stop` is set;
    appends (time, arm, status) to `seen` (status 0: no answer within 3 s; main's gateway
    leaves about one streamed request in a thousand to sluice sim unanswered, a bug found
    while writing these tests and reported, not fixed here)."""
    with client(http2, timeout=3) as c:
        while not stop.is_set():
            try:
                r = c.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=chat(model, stream=True), headers=headers or {})
                seen.append((time.time(), r.headers.get("x-sluice-arm"), r.status_code))
            except httpx.HTTPError:
                seen.append((time.time(), None, 0))


@pytest.mark.parametrize("http2", [False, True])
def test_a_failing_canary_is_rolled_back_within_the_interval(sims, sluice, http2):
    stable, canary = sims("m"), sims("m", "--fail-rate", "0.2")
    gw = sluice(canary_config(stable, canary, "{ window: 10s, interval: 1s, min_requests: 20 }"))
    stop, seen = threading.Event(), []
    t = threading.Thread(target=drive, args=(gw.port, http2, stop, seen))
    t.start()
    try:
        assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "rolled_back", 15)
        rolled_at = time.time()
        time.sleep(4)
        after = [s for s in seen if s[0] > rolled_at + 0.2 and s[2] != 0]
    finally:
        stop.set()
        t.join()
    split = admin_json(gw.admin_port, "/admin/splits")["splits"][0]
    arms = {a["model"]: a for a in split["guard"]["arms"]}
    assert arms["chat-v2"]["state"] == "rolled_back" and arms["chat-v2"]["reason"] == "error_rate"
    assert arms["chat-v1"]["state"] == "baseline" and arms["chat-v2"]["weight"] == 0
    assert [a["weight"] for a in split["arms"]] == [50, 0]
    # After the rollback every request goes to the baseline and succeeds.
    assert after and all(arm == "chat-v1" and status == 200 for _, arm, status in after), after[:5]
    # The baseline was untouched: no 5xx on its arm.
    assert metric(gw.admin_port, "sluice_model_responses_total", {"model": "chat", "arm": "chat-v1", "code_class": "5xx"}) == 0
    assert metric(gw.admin_port, "sluice_split_arm_state", {"model": "chat", "arm": "chat-v2", "state": "rolled_back"}) == 1
    assert metric(gw.admin_port, "sluice_split_arm_weight", {"model": "chat", "arm": "chat-v2"}) == 0
    assert metric(gw.admin_port, "sluice_split_rollbacks_total", {"model": "chat", "arm": "chat-v2", "reason": "error_rate"}) == 1
    assert "arm 'chat-v2' rolled back" in gw.wait_output("rolled back")
    # The dashboard's guard field.
    stats = admin_json(gw.admin_port, "/admin/stats")
    assert stats["splits"][0]["guard"]["state"] == "rolled_back"


def test_a_slow_canary_is_rolled_back_and_a_healthy_one_is_not(sims, sluice):
    stable, slow, healthy = sims("m"), sims("m", "--delay", "300"), sims("m")
    gw = sluice(gateway_config(
        f"""  - {{ name: stable, endpoints: ["http://127.0.0.1:{stable}"] }}
  - {{ name: slow, endpoints: ["http://127.0.0.1:{slow}"] }}
  - {{ name: healthy, endpoints: ["http://127.0.0.1:{healthy}"] }}""",
        """  - { name: v1, pool: stable, upstream_model: m }
  - { name: v2, pool: slow, upstream_model: m }
  - { name: v3, pool: healthy, upstream_model: m }
  - name: chat
    split: [{ model: v1, weight: 50 }, { model: v2, weight: 20 }, { model: v3, weight: 30 }]
    guard: { window: 10s, interval: 1s, min_requests: 10, ttft_p90_ratio: 3 }"""))
    stop, seen = threading.Event(), []
    threads = [threading.Thread(target=drive, args=(gw.port, False, stop, seen)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "rolled_back", 20)
        time.sleep(3)  # a few more evaluations: the healthy canary stays
    finally:
        stop.set()
        for t in threads:
            t.join()
    arms = {a["model"]: a for a in admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["arms"]}
    assert arms["v2"]["state"] == "rolled_back" and arms["v2"]["reason"] == "ttft_p90", arms
    assert arms["v3"]["state"] == "active" and arms["v3"]["weight"] == 30


def test_reset_needs_the_admin_token_and_restores_the_canary(sims, sluice):
    stable, canary = sims("m"), sims("m", "--fail-rate", "1")
    gw = sluice(canary_config(stable, canary, "{ window: 5s, interval: 500ms, min_requests: 5 }"))
    with client(False) as c:
        for _ in range(30):
            c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
    assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "rolled_back", 5)
    out = admin_json(gw.admin_port, "/admin/splits/chat/reset", method="POST")
    assert out["splits"][0]["guard"]["state"] == "holding"
    assert [a["weight"] for a in out["splits"][0]["arms"]] == [50, 50]
    with pytest.raises(urllib.error.HTTPError) as e:
        admin_json(gw.admin_port, "/admin/splits/nope/reset", method="POST")
    assert e.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        admin_json(gw.admin_port, "/admin/splits/chat/reset")
    assert e.value.code == 405


def test_admin_token_guards_splits_and_sticky_users_move_to_baseline(sims, sluice):
    stable, canary = sims("m"), sims("m", "--fail-rate", "1")
    cfg = canary_config(stable, canary, "{ window: 5s, interval: 500ms, min_requests: 5 }").replace(
        "    guard:", "    sticky: user\n    guard:").replace(
        'admin: { address: "127.0.0.1:ADMIN_PORT" }', 'admin: { address: "127.0.0.1:ADMIN_PORT", token: s3cret }')
    gw = sluice(cfg)
    with pytest.raises(urllib.error.HTTPError) as e:
        admin_json(gw.admin_port, "/admin/splits")
    assert e.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as e:
        admin_json(gw.admin_port, "/admin/splits/chat/reset", method="POST")
    assert e.value.code == 401
    users = [f"user-{i}" for i in range(40)]
    with client(False) as c:
        first = {u: c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", user=u)).headers["x-sluice-arm"] for u in users}
        canary_users = [u for u, a in first.items() if a == "chat-v2"]
        assert canary_users
        assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits", "s3cret")["splits"][0]["guard"]["state"] == "rolled_back", 5)
        for u in users:
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", user=u))
            assert r.status_code == 200 and r.headers["x-sluice-arm"] == "chat-v1"
        admin_json(gw.admin_port, "/admin/splits/chat/reset", "s3cret", method="POST")
        # After the reset they are back on their own arm.
        again = {u: c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", user=u)).headers["x-sluice-arm"] for u in canary_users[:3]}
        assert set(again.values()) == {"chat-v2"}


def test_a_reload_resets_the_guard(sims, sluice):
    stable, canary = sims("m"), sims("m", "--fail-rate", "1")
    gw = sluice(canary_config(stable, canary, "{ window: 5s, interval: 500ms, min_requests: 5 }"))
    with client(False) as c:
        for _ in range(30):
            c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
    assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "rolled_back", 5)
    text = gw.config.read_text().replace("min_requests: 5", "min_requests: 6")
    gw.config.write_text(text)
    assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "holding", 10)


def sim_requests(port):
    """Generation requests a sim finished (its vLLM success counter)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("vllm:request_success_total"))


def shadow_config(primary, shadow, fraction, extra_shadow=""):
    return gateway_config(
        f"""  - {{ name: pa, endpoints: ["http://127.0.0.1:{primary}"] }}
  - {{ name: pb, endpoints: ["http://127.0.0.1:{shadow}"] }}""",
        f"""  - {{ name: chat, pool: pa, upstream_model: m, shadow: {{ model: chat-next, fraction: {fraction}{extra_shadow} }} }}
  - {{ name: chat-next, pool: pb, upstream_model: m }}""",
        "logging: { access_log: stdout }")


@pytest.mark.parametrize("http2", [False, True])
def test_shadow_gets_the_sampled_fraction_and_the_client_is_unaffected(sims, sluice, http2):
    primary, shadow = sims("m"), sims("m")
    gw = sluice(shadow_config(primary, shadow, 0.3))
    n = 600
    with client(http2) as c:
        for i in range(n):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", stream=i % 2 == 1))
            assert r.status_code == 200 and "x-sluice-fallback" not in r.headers, (i, r.status_code, r.text)
    ap = gw.admin_port
    sent = metric(ap, "sluice_shadow_requests_total", {"model": "chat", "shadow": "chat-next", "result": "sent"})
    # 0.3 x 600 = 180, sd ~11: within 4 sd.
    assert 135 <= sent <= 225, sent
    assert metric(ap, "sluice_shadow_requests_total", {"result": "skipped"}) == 0
    assert wait_for(lambda: metric(ap, "sluice_model_responses_total", {"model": "chat", "arm": "shadow", "code_class": "2xx"}) == sent, 5)
    assert wait_for(lambda: sim_requests(shadow) == sent, 5)
    assert sim_requests(primary) == n
    # The client-facing series do not count the copies.
    assert metric(ap, "sluice_model_responses_total", {"model": "chat", "arm": "", "code_class": "2xx"}) == n
    assert metric(ap, "sluice_requests_total", {"pool": "pb"}) == 0
    assert metric(ap, "sluice_upstream_requests_total", {"pool": "pb"}) == 0
    out = gw.wait_output('"shadow":1')
    assert '"shadow":1' in out and '"shadow_model":"chat-next"' in out


def test_a_slow_or_failing_shadow_does_not_touch_the_client(sims, sluice):
    primary, slow = sims("m"), sims("m", "--delay", "1500", "--fail-rate", "0.5")
    gw = sluice(shadow_config(primary, slow, 1, ", max_in_flight: 4"))
    times = []
    with client(False) as c:
        for _ in range(40):
            t0 = time.time()
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
            times.append(time.time() - t0)
            assert r.status_code == 200
    # Each answer came long before the shadow's 1.5 s delay.
    assert max(times) < 1.0, max(times)
    ap = gw.admin_port
    sent = metric(ap, "sluice_shadow_requests_total", {"result": "sent"})
    skipped = metric(ap, "sluice_shadow_requests_total", {"result": "skipped"})
    # At most max_in_flight copies at once: the rest of the burst was not copied.
    assert sent + skipped == 40 and 4 <= sent < 40 and skipped > 0, (sent, skipped)
    assert wait_for(lambda: metric(ap, "sluice_model_request_duration_seconds_count", {"model": "chat", "arm": "shadow"}) == sent, 10)


def fallback_config(primary_url, backup, extra_model="", flow="false"):
    return gateway_config(
        f"""  - {{ name: main, endpoints: ["{primary_url}"] }}
  - {{ name: spare, endpoints: ["http://127.0.0.1:{backup}"] }}""",
        f"""  - {{ name: chat, pool: main, upstream_model: m, fallback: [chat-backup]{extra_model} }}
  - {{ name: chat-backup, pool: spare, upstream_model: m }}""",
        "logging: { access_log: stdout }", flow=flow)


@pytest.mark.parametrize("http2,flow", [(False, "false"), (True, "false"), (False, "true")])
def test_fallback_serves_every_request_while_the_primary_pool_is_down(sims, sluice, http2, flow):
    """With flow control on, a pool with no admitted endpoint would hold requests for
    queue_ttl; with a fallback they go on at once."""
    backup = sims("m")
    dead = free_port()  # nothing listens there
    gw = sluice(fallback_config(f"http://127.0.0.1:{dead}", backup, flow=flow))
    with client(http2, timeout=5) as c:
        for i in range(30):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", stream=i % 2 == 0))
            assert r.status_code == 200, r.text
            assert r.headers["x-sluice-fallback"] == "chat-backup"
    ap = gw.admin_port
    reasons = {r: metric(ap, "sluice_fallbacks_total", {"model": "chat", "to": "chat-backup", "reason": r})
               for r in ["connect_error", "no_endpoint", "status_5xx", "status_429"]}
    # Connection failures until the endpoint is ejected, then the pool has none.
    assert reasons["connect_error"] >= 1 and reasons["connect_error"] + reasons["no_endpoint"] == 30, reasons
    assert sim_requests(backup) == 30
    assert '"fallback":"chat-backup"' in gw.wait_output('"fallback":"chat-backup"')


@pytest.mark.parametrize("status,reason", [(500, "status_5xx"), (429, "status_429")])
def test_fallback_on_an_error_answer_before_the_first_byte(sims, sluice, status, reason):
    primary, backup = sims("m", "--fail-rate", "1", "--fail-status", str(status)), sims("m")
    gw = sluice(fallback_config(f"http://127.0.0.1:{primary}", backup))
    with client(False) as c:
        for i in range(10):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", stream=i % 2 == 0))
            assert r.status_code == 200 and r.headers["x-sluice-fallback"] == "chat-backup"
            assert "Injected fault" not in r.text
    n = metric(gw.admin_port, "sluice_fallbacks_total", {"reason": reason})
    if status == 429:
        assert n == 10  # a 429 does not count against the endpoint's health
    else:
        # 5xx answers until passive health ejects the endpoint, then the pool has none.
        assert n >= 1 and n + metric(gw.admin_port, "sluice_fallbacks_total", {"reason": "no_endpoint"}) == 10
    assert sim_requests(backup) == 10


def test_no_fallback_while_the_primary_is_healthy(sims, sluice):
    primary, backup = sims("m"), sims("m")
    gw = sluice(fallback_config(f"http://127.0.0.1:{primary}", backup))
    with client(True) as c:
        for _ in range(50):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
            assert r.status_code == 200 and "x-sluice-fallback" not in r.headers
    assert metric(gw.admin_port, "sluice_fallbacks_total") == 0
    assert sim_requests(backup) == 0 and sim_requests(primary) == 50


def test_the_last_model_of_a_chain_failing_is_an_error(sims, sluice):
    bad1, bad2 = sims("m", "--fail-rate", "1"), sims("m", "--fail-rate", "1")
    gw = sluice(fallback_config(f"http://127.0.0.1:{bad1}", bad2))
    with client(False) as c:
        r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
    # The backup's own answer reaches the client (it has no fallback of its own).
    assert r.status_code == 500 and r.headers["x-sluice-fallback"] == "chat-backup"
    assert metric(gw.admin_port, "sluice_fallbacks_total", {"reason": "status_5xx"}) == 1


def test_a_healthy_canary_is_not_rolled_back_over_a_soak(sims, sluice):
    """Two identical pools with step jitter, the guard at its default thresholds and a short
    window, under steady streamed load: no rollback. SLUICE_SOAK_SECONDS=300 for the issue's
    5-minute soak (default 20 s)."""
    import os
    seconds = float(os.environ.get("SLUICE_SOAK_SECONDS", "20"))
    # --time-scale 0.1 (the later flag wins): TTFTs of milliseconds to tens of milliseconds.
    stable = sims("m", "--jitter", "0.3", "--seed", "1", "--time-scale", "0.1")
    canary = sims("m", "--jitter", "0.3", "--seed", "2", "--time-scale", "0.1")
    gw = sluice(canary_config(stable, canary, "{ window: 10s, interval: 1s, min_requests: 20 }"))
    stop, seen = threading.Event(), []
    threads = [threading.Thread(target=drive, args=(gw.port, i % 2 == 1, stop, seen)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        end = time.time() + seconds
        while time.time() < end:
            assert admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "holding"
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    split = admin_json(gw.admin_port, "/admin/splits")["splits"][0]
    arms = {a["model"]: a for a in split["guard"]["arms"]}
    assert arms["chat-v2"]["state"] == "active" and arms["chat-v2"]["window_requests"] >= 20, arms
    assert arms["chat-v2"]["ttft_p90"] is not None
    assert metric(gw.admin_port, "sluice_split_rollbacks_total") == 0
    assert len(seen) > 100


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_shadow_copies_are_not_rate_limited_nor_cached(sims, sluice):
    """With a limit of 6 requests a minute and every request copied, the client still gets 6
    (the copies are not charged), the 7th is limited; the cache stores only the primary's answer
    (its key names the primary's model) and a hit is not copied again."""
    redis_port = free_port()
    redis = Proc(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    try:
        wait_port(redis_port)
        primary, shadow = sims("m"), sims("m")
        gw = sluice(gateway_config(
            f"""  - {{ name: pa, endpoints: ["http://127.0.0.1:{primary}"] }}
  - {{ name: pb, endpoints: ["http://127.0.0.1:{shadow}"] }}""",
            """  - { name: chat, pool: pa, upstream_model: m, shadow: { model: chat-next, fraction: 1 } }
  - { name: chat-next, pool: pb, upstream_model: m }""",
            f"""redis: {{ url: "redis://127.0.0.1:{redis_port}/2" }}
auth:
  api_keys: [{{ key: k-team, tenant: team }}]
cache: {{ enabled: true, ttl: 1m }}
rate_limits: [{{ tenant: team, requests_per_minute: 6 }}]"""))
        h = {"Authorization": "Bearer k-team"}
        with client(False) as c:
            statuses = []
            for i in range(5):
                r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", temperature=0, seed=i), headers=h)
                statuses.append(r.status_code)
            # A repeat: answered from the cache (the primary's answer), and not copied.
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", temperature=0, seed=0), headers=h)
            assert r.status_code == 200 and r.headers.get("x-sluice-cache") == "hit"
            statuses.append(r.status_code)
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat", temperature=0, seed=99), headers=h)
        assert statuses == [200] * 6, statuses
        assert r.status_code == 429
        assert wait_for(lambda: sim_requests(shadow) == 5, 5)
        assert metric(gw.admin_port, "sluice_shadow_requests_total", {"result": "sent"}) == 5
        assert metric(gw.admin_port, "sluice_cache_requests_total", {"result": "stored"}) == 5
    finally:
        redis.stop()


def test_a_healthy_canary_ramps_up_step_by_step(sims, sluice):
    """ramp [10, 50]: the candidate starts at 10 %, moves to 50 % once it held a window with
    enough requests, then the configured 50/50 applies; arms drawn follow the weights."""
    stable, canary = sims("m"), sims("m")
    gw = sluice(canary_config(stable, canary, "{ window: 2s, interval: 500ms, min_requests: 5, ramp: [10, 40] }"))
    weights = lambda: [a["weight"] for a in admin_json(gw.admin_port, "/admin/splits")["splits"][0]["arms"]]
    assert weights() == [0.9, 0.1]
    stop, seen = threading.Event(), []
    t = threading.Thread(target=drive, args=(gw.port, False, stop, seen))
    t.start()
    try:
        assert wait_for(lambda: weights() == [0.6, 0.4], 10)
        step2 = time.time()
        assert wait_for(lambda: weights() == [50, 50], 10)
        done = time.time()
        time.sleep(1.5)
    finally:
        stop.set()
        t.join()
    first = [arm for at, arm, s in seen if at < step2 - 0.5 and s == 200]
    last = [arm for at, arm, s in seen if at > done + 0.2 and s == 200]
    share = lambda xs: sum(1 for a in xs if a == "chat-v2") / max(1, len(xs))
    assert len(first) > 50 and share(first) < 0.25, share(first)
    assert len(last) > 50 and 0.35 < share(last) < 0.65, share(last)
    guard = admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]
    assert guard["state"] == "holding" and guard["ramp_step"] is None
    assert "ramp step 2: candidates at 40.0%" in gw.wait_output("configured weights apply")


def test_a_canary_whose_failures_a_fallback_hides_is_still_rolled_back(sims, sluice):
    """The canary's own fallback serves every client, yet its arm counts the failures."""
    stable, canary = sims("m"), sims("m", "--fail-rate", "1")
    cfg = canary_config(stable, canary, "{ window: 10s, interval: 500ms, min_requests: 10 }").replace(
        "{ name: chat-v2, pool: canary, upstream_model: m }", "{ name: chat-v2, pool: canary, upstream_model: m, fallback: [chat-v1] }")
    gw = sluice(cfg)
    with client(False) as c:
        for _ in range(40):
            r = c.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", json=chat("chat"))
            assert r.status_code == 200
    assert metric(gw.admin_port, "sluice_fallbacks_total", {"model": "chat-v2", "to": "chat-v1", "reason": "status_5xx"}) > 0
    assert wait_for(lambda: admin_json(gw.admin_port, "/admin/splits")["splits"][0]["guard"]["state"] == "rolled_back", 5)
    assert metric(gw.admin_port, "sluice_model_responses_total", {"model": "chat", "arm": "chat-v1", "code_class": "5xx"}) == 0
