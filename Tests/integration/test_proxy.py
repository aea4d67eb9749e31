"""Issue 2 end to end: the release binary with curl, wrk, nginx and a streaming upstream."""
import json
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import FIXED_BODY, have


def config(*endpoints, workers=1):
    """A single pool in front of `endpoints`, as `sluice serve` flags."""
    args = ["--listen", "127.0.0.1:PORT", "--admin", "127.0.0.1:ADMIN_PORT", "--workers", str(workers),
            "--drain-delay", "0s"]
    for p in endpoints:
        args += ["--endpoint", f"http://127.0.0.1:{p}"]
    return args


def curl(*args):
    # Bytes, not text=True: universal newlines would turn the head's CRLFs into LFs.
    r = subprocess.run(["curl", "-sS", *args], capture_output=True, timeout=30)
    r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    return r


def test_curl_post_through_sluice_to_nginx(nginx_upstream, sluice):
    s = sluice(config(nginx_upstream))
    r = curl("-i", "-X", "POST", "-H", "Content-Type: application/json",
             "--data", '{"model":"tiny","messages":[{"role":"user","content":"hi"}]}',
             f"http://127.0.0.1:{s.port}/v1/chat/completions")
    assert r.returncode == 0, r.stderr
    head, body = r.stdout.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 200")
    assert re.search(r"(?im)^x-request-id: [0-9a-f]{16}\r?$", head)
    assert json.loads(body) == json.loads(FIXED_BODY)


def test_wrk_keepalive_load_has_no_errors(nginx_upstream, sluice):
    if not have("wrk"):
        pytest.fail("wrk is required (bash .ci/setup installs it)")
    s = sluice(config(nginx_upstream, workers=2))
    r = subprocess.run(["wrk", "-t1", "-c16", "-d2s", f"http://127.0.0.1:{s.port}/v1/models"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    total = int(re.search(r"(\d+) requests in", r.stdout).group(1))
    assert total > 1000, r.stdout
    assert "Non-2xx" not in r.stdout and "Socket errors" not in r.stdout, r.stdout


def test_sse_reaches_curl_event_by_event(py_upstream, sluice):
    s = sluice(config(py_upstream.server_port))
    p = subprocess.Popen(["curl", "-sSN", "-X", "POST", "--data", "{}",
                          f"http://127.0.0.1:{s.port}/v1/stream"], stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline()
    # The first event is out while the upstream still has events to send.
    assert first.startswith('data: {"n":0}')
    assert py_upstream.sent < StreamingHandlerEvents()
    rest = p.stdout.read()
    p.wait(10)
    assert "data: [DONE]" in rest


def StreamingHandlerEvents():
    from conftest import StreamingHandler
    return StreamingHandler.events


def test_client_abort_stops_upstream(py_upstream, sluice):
    from conftest import StreamingHandler
    StreamingHandler.events, StreamingHandler.gap = 100, 0.05
    try:
        s = sluice(config(py_upstream.server_port))
        p = subprocess.Popen(["curl", "-sSN", "-X", "POST", "--data", "{}",
                              f"http://127.0.0.1:{s.port}/v1/stream"], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().startswith("data:")
        p.kill()
        p.wait()
        t0 = time.time()
        while not py_upstream.aborted and time.time() - t0 < 2:
            time.sleep(0.02)
        assert py_upstream.aborted
        assert time.time() - t0 < 1.5
        assert py_upstream.sent < 100
    finally:
        StreamingHandler.events, StreamingHandler.gap = 5, 0.1


def test_unreachable_upstream_gives_openai_502(sluice):
    s = sluice(config(1))  # port 1: nothing listens
    r = curl("-i", "-X", "POST", "--data", '{"model":"m","messages":[]}', f"http://127.0.0.1:{s.port}/v1/chat/completions")
    head, body = r.stdout.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 502")
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}


def test_sigterm_finishes_inflight_request_and_exits_zero(py_upstream, sluice):
    s = sluice(config(py_upstream.server_port))
    out = {}

    def slow():
        out["r"] = curl("-X", "POST", "--data", "{}", f"http://127.0.0.1:{s.port}/slow")

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    s.p.send_signal(signal.SIGTERM)
    t.join(10)
    assert json.loads(out["r"].stdout) == json.loads(FIXED_BODY)
    assert s.p.wait(10) == 0


def test_sigterm_drains_twenty_streams(py_upstream, sluice):
    """Issue 11's drain: SIGTERM while 20 streams run. Readiness fails at once; new connections
    are still accepted during the drain delay and refused after it; all 20 streams complete; the
    process exits 0 within the grace period."""
    from conftest import StreamingHandler
    StreamingHandler.events, StreamingHandler.gap = 20, 0.1  # each stream lasts ~2 s
    try:
        s = sluice(["--listen", "127.0.0.1:PORT", "--admin", "127.0.0.1:ADMIN_PORT", "--workers", "2",
                    "--drain-delay", "1s", "--grace", "10s", "--endpoint", f"http://127.0.0.1:{py_upstream.server_port}"])
        streams = [subprocess.Popen(["curl", "-sSN", "-X", "POST", "--data", "{}", f"http://127.0.0.1:{s.port}/v1/stream"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(20)]
        def started():
            return sum(1 for path, _, _ in py_upstream.seen if path == "/v1/stream")
        deadline = time.time() + 5
        while started() < 20 and time.time() < deadline:
            time.sleep(0.02)
        assert started() == 20
        t0 = time.time()
        s.p.send_signal(signal.SIGTERM)
        ready = None
        while time.time() - t0 < 0.5:
            ready = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{s.admin_port}/readyz").stdout
            if ready == "503":
                break
        assert ready == "503", "readiness did not fail at once"
        # Within the drain delay: still accepting (load balancers are withdrawing the pod).
        during = curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{s.port}/ok")
        assert time.time() - t0 < 1.0 and during.stdout == "200"
        # After it: refused.
        time.sleep(max(0.0, t0 + 1.4 - time.time()))
        after = subprocess.run(["curl", "-sS", "-o", "/dev/null", f"http://127.0.0.1:{s.port}/ok"], capture_output=True)
        assert after.returncode == 7, after  # curl: couldn't connect
        for p in streams:
            out, err = p.communicate(timeout=15)
            assert p.returncode == 0, err
            assert out.decode().count("data: ") == 21 and out.endswith(b"data: [DONE]\n\n")
        assert s.p.wait(12) == 0
        assert time.time() - t0 < 11  # within drain delay + grace
    finally:
        StreamingHandler.events, StreamingHandler.gap = 5, 0.1
