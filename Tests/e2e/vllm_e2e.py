"""Helpers for the end-to-end suite that puts the release `sluice` binary in front of two REAL vLLM
servers (the CPU build from ../shared/vllm-cpu). Named `vllm_e2e` (not `conftest`) so it can be
imported next to Tests/integration's conftest in one pytest run."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import httpx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.environ.get("SLUICE_BIN") or os.path.join(ROOT, ".build", "release", "sluice")
# The vLLM scripts (install.sh, serve.sh) and where install.sh puts the venv and the models.
VLLM_DIR = os.environ.get("SLUICE_VLLM_CPU_DIR") or os.path.abspath(os.path.join(ROOT, "..", "shared", "vllm-cpu"))
VLLM_VENV = os.environ.get("SLUICE_VLLM_VENV", "/opt/vllm-cpu/venv")
MODELS = os.environ.get("SLUICE_VLLM_MODELS", "/opt/vllm-cpu/models")
BASE = "tiny-llama"          # serve.sh's served model name

# Measurements the tests record; conftest prints them in the terminal summary and writes them to
# $SLUICE_E2E_RESULTS (default /tmp/sluice-e2e-results.json).
RESULTS = {}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not open")


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls `pred` until it returns a truthy value (returned) or `timeout` passes (AssertionError)."""
    end = time.time() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.time() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- Prometheus text

def parse_metrics(text):
    """[(name, {labels}, value)] from Prometheus text exposition (enough for vLLM's and Sluice's)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            body, value = rest.rsplit("}", 1)
            labels = {}
            i = 0
            while i < len(body):
                eq = body.index("=", i)
                key = body[i:eq].strip().lstrip(",").strip()
                j = eq + 2  # after ="
                val = []
                while body[j] != '"':
                    if body[j] == "\\":
                        j += 1
                        val.append({"n": "\n"}.get(body[j], body[j]))
                    else:
                        val.append(body[j])
                    j += 1
                labels[key] = "".join(val)
                i = j + 1
                while i < len(body) and body[i] in ", ":
                    i += 1
        else:
            name, value = line.split(None, 1)
            labels = {}
        out.append((name.strip(), labels, float(value.split()[0])))
    return out


class Metrics:
    def __init__(self, text):
        self.samples = parse_metrics(text)

    def series(self, name, **labels):
        return [(l, v) for n, l, v in self.samples
                if n == name and all(l.get(k) == str(x) for k, x in labels.items())]

    def sum(self, name, **labels):
        return sum(v for _, v in self.series(name, **labels))

    def value(self, name, **labels):
        s = self.series(name, **labels)
        assert len(s) == 1, f"{name} {labels}: expected one series, got {s}"
        return s[0][1]


# ---------------------------------------------------------------- processes

class Proc:
    """A child process with its output in a temp file (like Tests/integration's)."""

    def __init__(self, args, **kw):
        self.log = tempfile.NamedTemporaryFile(prefix="sluice-e2e-", suffix=".log", delete=False)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, **kw)

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def vllm_installed():
    return (os.path.exists(os.path.join(VLLM_VENV, "bin", "python"))
            and os.path.exists(os.path.join(MODELS, BASE, "config.json"))
            and all(os.path.exists(os.path.join(MODELS, f"lora-{a}", "adapter_config.json")) for a in ("a1", "a2", "a3")))


class VLLM:
    """One real vLLM server started with serve.sh in its own session/process group; stopped by
    that group id (= the PID we started), SIGTERM then SIGKILL after 30 s."""

    def __init__(self, name, loras, extra_args=(), log_dir=None):
        self.name = name
        self.loras = loras
        self.extra_args = list(extra_args)
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="sluice-e2e-vllm-")
        self.proc = None
        self.port = None
        self.ready_seconds = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def authority(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        self.port = free_port()
        self.log_path = os.path.join(self.log_dir, f"vllm-{self.name}-{self.port}.log")
        # The Responses API keeps responses only with its store on (issue 27: follow-ups must
        # reach the server that holds them).
        env = dict(os.environ, PORT=str(self.port), LORAS=self.loras, VENV=VLLM_VENV, MODELS=MODELS,
                   VLLM_ENABLE_RESPONSES_API_STORE="1")
        self._log = open(self.log_path, "wb")
        self.started_at = time.time()
        self.proc = subprocess.Popen([os.path.join(VLLM_DIR, "serve.sh"), *self.extra_args], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout=240):
        """None when /health answers 200; else the reason (process died / timed out)."""
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                return f"vLLM {self.name} exited with {self.proc.returncode}; log tail:\n{self.log_tail()}"
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    self.ready_seconds = round(time.time() - self.started_at, 1)
                    return None
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        return f"vLLM {self.name} not ready after {timeout}s; log tail:\n{self.log_tail()}"

    def stop(self):
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the PID we started
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.time() + 30
        while time.time() < end:
            self.proc.poll()  # reap the leader so it does not linger as a zombie
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        self.proc = None

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def log_tail(self, n=30):
        return "\n".join(self.log_text().splitlines()[-n:])

    def metrics(self):
        return Metrics(httpx.get(self.url + "/metrics", timeout=5).text)

    def models(self):
        """{id: parent} from the server's own /v1/models."""
        data = httpx.get(self.url + "/v1/models", timeout=5).json()["data"]
        return {m["id"]: m.get("parent") for m in data}

    def adapters(self):
        return {i for i, p in self.models().items() if p is not None}

    def unload(self, adapter):
        return httpx.post(self.url + "/v1/unload_lora_adapter", json={"lora_name": adapter}, timeout=10)


def newest_lora_info(m):
    """The current `vllm:lora_requests_info` series (the value is its update time; old label sets
    stay exposed): (max_lora, running list, waiting list) or None when the family is absent."""
    s = m.series("vllm:lora_requests_info")
    if not s:
        return None
    labels, _ = max(s, key=lambda lv: lv[1])
    split = lambda v: [a for a in v.split(",") if a]
    return int(labels["max_lora"]), split(labels["running_lora_adapters"]), split(labels["waiting_lora_adapters"])


def successes(m):
    """Finished requests of every reason (stop, length, abort, ...): vLLM's own request count."""
    return m.sum("vllm:request_success_total")


# ---------------------------------------------------------------- Sluice

def gateway_yaml(endpoints, routing="default", extra=""):
    """A Sluice config in front of `endpoints` with the base model, a1 (loaded on A by the
    fixture) and a2 (loaded nowhere: on-demand loading). PORT/ADMIN_PORT are substituted."""
    eps = ", ".join(f'"{e}"' for e in endpoints)
    return f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 1
timeouts: {{ drain_delay: 0s }}
telemetry: {{ interval: 100ms }}
logging: {{ access_log: stdout }}
pools: [{{ name: vllm, endpoints: [{eps}], routing: {routing} }}]
models:
  - {{ name: {BASE}, pool: vllm }}
  - {{ name: a1, pool: vllm, adapter: a1, adapter_path: {MODELS}/lora-a1 }}
  - {{ name: a2, pool: vllm, adapter: a2, adapter_path: {MODELS}/lora-a2 }}
{extra}"""


class Gateway(Proc):
    """A running `sluice serve` (port, admin_port set by the fixture)."""

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def admin(self, path):
        return httpx.get(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5)

    def endpoints(self):
        """{authority: endpoint object} from GET /admin/endpoints."""
        out = {}
        for pool in self.admin("/admin/endpoints").json()["pools"]:
            for e in pool["endpoints"]:
                out[e["url"].removeprefix("http://")] = e
        return out

    def metrics(self):
        return Metrics(self.admin("/metrics").text)

    def access_log(self):
        lines = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return lines

    def wait_access_log(self, count, timeout=3.0, model=None):
        """Waits until at least `count` access log lines (for `model`) are written (the log thread
        flushes every 100 ms) and returns them."""
        def ready():
            ls = [l for l in self.access_log() if model is None or l.get("model") == model]
            return ls if len(ls) >= count else None
        return wait_until(ready, timeout, what=f"{count} access log lines")

    def wait_telemetry(self, servers, timeout=10.0):
        """Waits until Sluice has fresh telemetry for every server and its adapter list equals the
        server's own /v1/models (so routing by adapter is not guessing); returns the admin view."""
        def ready():
            eps = self.endpoints()
            for s in servers:
                e = eps.get(s.authority)
                if e is None or not (0 <= e["telemetry"]["age_seconds"] < 1.0):
                    return None
                if set(e["telemetry"]["adapters_loaded"]) != s.adapters():
                    return None
            return eps
        return wait_until(ready, timeout, interval=0.1, what="Sluice telemetry of every endpoint")
