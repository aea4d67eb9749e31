"""Issue 8 over TLS with real clients: a test CA signs the listener's certificate; curl --http2 and
the openai SDK on httpx.Client(http2=True) negotiate h2 by ALPN and are served, streaming and not;
an HTTP/1.1-only client on the same port gets HTTP/1.1; h2load drives h2 over TLS."""
import shutil
import subprocess

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
