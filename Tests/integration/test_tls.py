"""Issue 8 over TLS with real clients: a test CA signs the listener's certificate; curl --http2 and
the openai SDK on httpx.Client(http2=True) negotiate h2 by ALPN and are served, streaming and not;
an HTTP/1.1-only client on the same port gets HTTP/1.1; h2load drives h2 over TLS; large request
bodies over HTTP/1.1 and TLS arrive whole and at once, however they are cut."""
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time

import httpx
import openai
import pytest

from conftest import SLUICE, Proc, free_port, wait_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_demo(tmp_path_factory):
    """A test CA, a server certificate for 127.0.0.1 signed by it, and `sluice` on a TLS listener in
    front of two simulated vLLM servers."""
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=Sluice test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem", cwd=d)
    sims = [free_port(), free_port()]
    procs = [Proc([SLUICE, "sim", "--port", str(p), "--model", "tiny-llama", "--time-scale", "0.05"]) for p in sims]
    for p in sims:
        wait_port(p)
    port = free_port()
    cfg = d / "sluice.yaml"
    cfg.write_text(f"""
listen: [{{ address: "127.0.0.1:{port}", tls: {{ cert: "{d}/server.pem", key: "{d}/server.key" }} }}]
admin: {{ address: "127.0.0.1:{free_port()}" }}
timeouts: {{ drain_delay: 0s }}
pools: [{{ name: sims, endpoints: ["http://127.0.0.1:{sims[0]}", "http://127.0.0.1:{sims[1]}"] }}]
models: [{{ name: tiny-llama, pool: sims }}]
""")
    gw = Proc([SLUICE, "serve", "--config", str(cfg)])
    procs.append(gw)
    wait_port(port)
    yield port, str(d / "ca.pem")
    for p in procs:
        p.stop()


def test_curl_negotiates_h2_and_http11_over_tls(tls_demo):
    port, ca = tls_demo
    url = f"https://127.0.0.1:{port}/v1/models"
    h2 = subprocess.run(["curl", "-sS", "--http2", "--cacert", ca, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url],
                        capture_output=True, text=True, timeout=10)
    assert h2.stdout == "2 200", h2.stderr
    h1 = subprocess.run(["curl", "-sS", "--http1.1", "--cacert", ca, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", url],
                        capture_output=True, text=True, timeout=10)
    assert h1.stdout == "1.1 200", h1.stderr
    # Without the CA the certificate is not trusted: the listener really presents the test cert.
    untrusted = subprocess.run(["curl", "-sS", "--http2", "-o", "/dev/null", url], capture_output=True, text=True, timeout=10)
    assert untrusted.returncode == 60


def test_openai_sdk_over_h2_with_tls(tls_demo):
    port, ca = tls_demo
    with httpx.Client(http2=True, verify=ca) as hc:
        assert hc.get(f"https://127.0.0.1:{port}/v1/models").http_version == "HTTP/2"
        c = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key="unused", http_client=hc, max_retries=0)
        r = c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        assert r.usage.completion_tokens == 4 and r.choices[0].message.content
        chunks = list(c.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=4, stream=True, stream_options={"include_usage": True}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert chunks[-1].usage.completion_tokens == 4
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_h2load_over_tls(tls_demo):
    port, _ = tls_demo
    r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "16", f"https://127.0.0.1:{port}/v1/models"],
                       capture_output=True, text=True, timeout=60)
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout[-2000:]
    assert "Application protocol: h2" in r.stdout


# A prompt far over the simulated model's 2,048-token context: the simulator answers 400 naming
# the prompt's token count, which shows the whole body reached it.
BIG_CHAT = json.dumps({"model": "tiny-llama", "max_tokens": 4,
                       "messages": [{"role": "user", "content": "The quick brown fox. " * 15000}]}).encode()


@pytest.mark.parametrize("cut", ["one write", "pieces"])
def test_large_bodies_over_tls_arrive_whole_and_at_once(tls_demo, cut):
    # Over TLS a read returns one record (16 KiB) however much more is waiting, and the socket's
    # low-water mark must leave room for a record OpenSSL holds half read: either mistake stalls
    # a request until a timeout, not every time, so several go over one connection.
    port, ca = tls_demo
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5,
                                       context=ssl.create_default_context(cafile=ca))
    for i in range(6):
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(BIG_CHAT)))
        conn.endheaders()
        if cut == "one write":
            conn.send(BIG_CHAT)
        else:
            for a, b in [(0, 1000), (1000, 150000), (150000, len(BIG_CHAT))]:
                conn.send(BIG_CHAT[a:b])
                time.sleep(0.05)
        t = time.monotonic()
        r = conn.getresponse()
        body = r.read()
        waited = time.monotonic() - t
        assert r.status == 400 and b"maximum context length" in body, (i, r.status, body[:300])
        assert waited < 2.0, f"request {i}: the response came {waited:.2f} s after the body"
    conn.request("GET", "/v1/models")
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["data"][0]["id"] == "tiny-llama"
    conn.close()


class CutTLSClient:
    """TLS over memory BIOs: the request is encrypted first, then its ciphertext is sent cut
    wherever the test says — inside a record, too, which no ordinary client can be made to do."""

    def __init__(self, port, ca):
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ssl.create_default_context(cafile=ca).wrap_bio(self.inc, self.out, server_hostname="127.0.0.1")
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.out.read())
                self.inc.write(self.sock.recv(65536))
        self.sock.sendall(self.out.read())

    def encrypt(self, data):
        self.tls.write(data)
        return self.out.read()

    def response(self):
        """(status, body) of the next response (Content-Length framed)."""
        buf = b""
        while True:
            try:
                buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                assert data, "the connection closed before the response"
                self.inc.write(data)
                continue
            if b"\r\n\r\n" in buf:
                head, rest = buf.split(b"\r\n\r\n", 1)
                n = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0])
                if len(rest) >= n:
                    return int(head.split(b" ")[1]), rest[:n]


def test_large_body_cut_inside_a_tls_record(tls_demo):
    # The head, then half of the body's first record: OpenSSL holds that half when the socket
    # runs dry, so the socket will receive less ciphertext than the body has plaintext left. A
    # low-water mark of the plaintext still missing would never be reached.
    port, ca = tls_demo
    c = CutTLSClient(port, ca)
    head = c.encrypt(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(BIG_CHAT))
    body = c.encrypt(BIG_CHAT)
    c.sock.sendall(head + body[:8000])
    time.sleep(0.2)
    c.sock.sendall(body[8000:])
    t = time.monotonic()
    status, answer = c.response()
    waited = time.monotonic() - t
    assert status == 400 and b"maximum context length" in answer, (status, answer[:300])
    assert waited < 2.0, f"the response came {waited:.2f} s after the body"
    c.sock.close()
