"""Issue 6: the admin /metrics scrape parses with the reference Prometheus client parser, and
counts what was sent."""
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import SLUICE


def test_metrics_parse_and_count(nginx_upstream, sluice):
    s = sluice(["--listen", "127.0.0.1:PORT", "--admin", "127.0.0.1:ADMIN_PORT", "--workers", "2",
                "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{nginx_upstream}"])
    body = '{"model":"tiny","messages":[{"role":"user","content":"hi"}]}'
    for _ in range(25):
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--data", body,
                            f"http://127.0.0.1:{s.port}/v1/chat/completions"], capture_output=True, text=True)
        assert r.stdout == "200"
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/metrics", timeout=5).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    req = families["sluice_requests"]  # the parser strips _total from counters
    ok = [smp.value for smp in req.samples if smp.labels.get("code_class") == "2xx" and smp.name.endswith("_total")]
    assert ok == [25.0]
    dur = families["sluice_request_duration_seconds"]
    count = [smp.value for smp in dur.samples if smp.name.endswith("_count")]
    assert count == [25.0]
    tokens = {smp.labels["type"]: smp.value for smp in families["sluice_tokens"].samples}
    assert tokens == {"input": 9 * 25, "output": 2 * 25}
    assert families["sluice_workers"].samples[0].value == 2


def test_promtool_accepts_a_scrape_taken_under_load(nginx_upstream, sluice, tmp_path):
    """`promtool check metrics` (Prometheus's own linter) on scrapes taken while wrk drives
    traffic through two workers; every family, including the per-endpoint re-exports."""
    import shutil
    import threading
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus; .ci/setup installs it)"
    s = sluice(["--listen", "127.0.0.1:PORT", "--admin", "127.0.0.1:ADMIN_PORT", "--workers", "2",
                "--drain-delay", "0s", "--endpoint", f"http://127.0.0.1:{nginx_upstream}"])
    lua = tmp_path / "post.lua"
    lua.write_text('wrk.method = "POST"\nwrk.body = \'{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream":false}\'\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    load = subprocess.Popen(["wrk", "-t1", "-c8", "-d3s", "-s", str(lua), f"http://127.0.0.1:{s.port}/v1/chat/completions"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        checked = 0
        while load.poll() is None and checked < 5:
            text = urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/metrics", timeout=5).read()
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
            assert r.returncode == 0, (r.stdout + r.stderr).decode()[:2000]
            checked += 1
        assert checked >= 2
    finally:
        out, _ = load.communicate(timeout=10)
    assert "requests in" in out


def test_grafana_dashboard_matches_the_metrics(sluice):
    """Every series the dashboard (deploy/grafana) queries exists in a real scrape, with the
    labels its selectors and `by (...)` clauses use (namespace and pod come from Prometheus)."""
    import json
    import os
    import re
    import time
    from conftest import Proc, free_port, wait_port
    sim_port = free_port()
    sim = Proc([SLUICE, "sim", "--port", str(sim_port), "--model", "tiny", "--time-scale", "0.01"])
    wait_port(sim_port)
    nginx_upstream = sim_port
    s = sluice(f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
timeouts: {{ drain_delay: 0s }}
pools: [{{ name: default, endpoints: ["http://127.0.0.1:{nginx_upstream}"] }}]
models:
  - {{ name: tiny, pool: default, fallback: [tiny-b] }}
  - {{ name: tiny-b, pool: default, upstream_model: tiny }}
  # Issue 26's split row: a guarded split with a shadow.
  - name: canary
    split: [{{ model: tiny, weight: 1 }}, {{ model: tiny-b, weight: 1 }}]
    guard: {{ window: 10s, interval: 1s }}
    shadow: {{ model: tiny-b, fraction: 1 }}
""")
    body = '{"model":"tiny","messages":[{"role":"user","content":"hi"}]}'
    for _ in range(3):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--data", body, f"http://127.0.0.1:{s.port}/v1/chat/completions"], check=True)
    for _ in range(4):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--data", body.replace("tiny", "canary"), f"http://127.0.0.1:{s.port}/v1/chat/completions"], check=True)
    time.sleep(0.3)  # a few telemetry scrapes of the simulator
    text = urllib.request.urlopen(f"http://127.0.0.1:{s.admin_port}/metrics", timeout=5).read().decode()
    sim.stop()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    labels = {}
    for line in text.splitlines():
        m = re.match(r"^(sluice_[a-z_]+)\{([^}]*)\}", line)
        if m:
            labels.setdefault(m.group(1), set()).update(k for k in re.findall(r'(\w+)="', m.group(2)))
    prometheus_labels = {"namespace", "pod", "le"}
    root = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "grafana", "sluice-dashboard.json")
    exprs = []

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(json.load(open(root)))
    assert len(exprs) > 20
    for e in exprs:
        used = set()
        for name, selector in re.findall(r"(sluice_[a-z_]+)(?:\{([^}]*)\})?", e):
            family = re.sub(r"_(bucket|count|sum)$", "", name)
            assert family in declared, f"{name} is not exported (in: {e})"
            have = labels.get(name, set()) | labels.get(family, set()) | prometheus_labels
            keys = set(re.findall(r"(\w+)\s*=~?", selector or ""))
            assert keys <= have, f"{name} has no label(s) {keys - have} (in: {e})"
            used |= have
        for group in re.findall(r"by \(([^)]*)\)", e):
            keys = {k.strip() for k in group.split(",")}
            assert keys <= used, f"by ({group}) uses labels the series lack (in: {e})"
