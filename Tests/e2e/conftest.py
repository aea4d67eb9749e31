"""Fixtures: two real vLLM servers (started once per session with ../shared/vllm-cpu/serve.sh, ended
by their process-group id) and `sluice serve` processes in front of them (one or more per test,
ended by PID). The suite skips only when vLLM cannot be installed or started on this machine;
set SLUICE_E2E_REQUIRE_VLLM=1 to turn that skip into a failure (CI machines that have vLLM)."""
import json
import os
import subprocess
import time

import pytest

from vllm_e2e import (MODELS, RESULTS, SLUICE, VLLM, VLLM_DIR, VLLM_VENV, Gateway, free_port,
                      vllm_installed, wait_port)


def _unavailable(reason):
    if os.environ.get("SLUICE_E2E_REQUIRE_VLLM") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_install():
    """Runs ../shared/vllm-cpu/install.sh once if the venv or the models are missing (install.sh is
    idempotent, but even when everything is there it re-runs pip: ~7 s, so it is skipped then)."""
    t0 = time.time()
    if not os.path.exists(os.path.join(VLLM_DIR, "serve.sh")):
        _unavailable(f"vLLM CPU scripts not found at {VLLM_DIR} (../shared/vllm-cpu beside the checkout; or set SLUICE_VLLM_CPU_DIR)")
    if not vllm_installed():
        script = os.path.join(VLLM_DIR, "install.sh")
        if not os.path.exists(script):
            _unavailable(f"vLLM CPU scripts not found at {VLLM_DIR} (set SLUICE_VLLM_CPU_DIR)")
        try:
            r = subprocess.run([script], capture_output=True, text=True, timeout=1800,
                               env=dict(os.environ, VENV=VLLM_VENV, MODELS=MODELS))
        except subprocess.TimeoutExpired:
            _unavailable("vLLM install.sh did not finish in 30 min")
        if r.returncode != 0 or not vllm_installed():
            tail = "\n".join((r.stdout + r.stderr).splitlines()[-15:])
            _unavailable(f"vLLM cannot be installed on this machine (install.sh exit {r.returncode}):\n{tail}")
    RESULTS["install_check_s"] = round(time.time() - t0, 1)


class Cluster:
    """Instance A serves LoRA a1; instance B serves a3 only (serve.sh cannot start with no adapter:
    an empty LORAS falls back to a1, and `--lora-modules` needs at least one). Neither has a2."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.a = VLLM("A", f"a1={MODELS}/lora-a1", log_dir=log_dir)
        self.b = VLLM("B", f"a3={MODELS}/lora-a3", log_dir=log_dir)

    @property
    def servers(self):
        return [self.a, self.b]

    def start(self, servers):
        t0 = time.time()
        for s in servers:
            s.start()
        for s in servers:
            reason = s.wait_ready()
            if reason:
                for x in servers:
                    x.stop()
                return reason
        return round(time.time() - t0, 1)

    def restart_b(self, extra_args):
        """Restarts B with other serve.sh extra args (e.g. an admission limit)."""
        if self.b.extra_args == list(extra_args):
            return 0.0
        self.b.stop()
        self.b = VLLM("B", self.b.loras, extra_args, log_dir=self.log_dir)
        took = self.start([self.b])
        if isinstance(took, str):
            pytest.fail(took, pytrace=False)
        return took

    def ensure_normal(self):
        """Tests other than the overload one want B as started (no admission limit)."""
        self.restart_b([])

    def stop(self):
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def cluster(vllm_install, tmp_path_factory):
    if not os.path.exists(SLUICE):
        pytest.fail(f"sluice binary not found at {SLUICE} (set SLUICE_BIN)", pytrace=False)
    c = Cluster(str(tmp_path_factory.mktemp("vllm")))
    took = c.start(c.servers)
    if isinstance(took, str):
        _unavailable(f"vLLM cannot be started on this machine: {took}")
    RESULTS["vllm_start_both_s"] = took
    RESULTS["vllm_logs"] = c.log_dir
    yield c
    c.stop()


@pytest.fixture
def vllm(cluster):
    """The two instances in their normal configuration."""
    cluster.ensure_normal()
    return cluster


@pytest.fixture
def sluice(tmp_path):
    """Starts `sluice serve` with YAML text (PORT and ADMIN_PORT substituted); returns a Gateway.
    Every process is stopped (by its PID) when the test ends."""
    procs = []

    def start(config):
        port, admin = free_port(), free_port()
        cfg = tmp_path / f"sluice-{len(procs)}.yaml"
        cfg.write_text(config.replace("ADMIN_PORT", str(admin)).replace("PORT", str(port)))
        g = Gateway([SLUICE, "serve", "--config", str(cfg)])
        procs.append(g)
        g.port, g.admin_port, g.config = port, admin, cfg
        wait_port(port)
        wait_port(admin)
        return g

    yield start
    for g in procs:
        g.stop()


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("sluice + vLLM measurements")
    for k, v in RESULTS.items():
        terminalreporter.write_line(f"{k}: {v}")
    path = os.environ.get("SLUICE_E2E_RESULTS", "/tmp/sluice-e2e-results.json")
    try:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=2, sort_keys=True)
        terminalreporter.write_line(f"(written to {path})")
    except OSError:
        pass
