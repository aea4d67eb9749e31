"""Checks of the rendered Kubernetes manifests (issue 11): every overlay builds with
`kubectl kustomize`, has the objects it should, and its pods are wired the way Sluice needs
(probes on the admin port, a locked-down security context, the config mounted as a directory at
the path the container's --config names, a grace period longer than the configured drain).

Run: python3 -m pytest -q deploy/kubernetes      (needs PyYAML; the rendering checks need kubectl)
With SLUICE_BIN=/path/to/sluice it also runs `sluice validate --offline` on every sluice.yaml here
(Tests/run does both).
"""

import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

HERE = pathlib.Path(__file__).resolve().parent
OVERLAYS = ["ingress", "sidecar"]
KUBECTL = shutil.which("kubectl")

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed (Debian package kubectl)")


def render(path: pathlib.Path) -> list[dict]:
    out = subprocess.run([KUBECTL, "kustomize", str(path)], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(duration))
    assert m, f"not a duration: {duration!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def sluice_config(objs: list[dict]) -> dict:
    cm = one(objs, "ConfigMap", "sluice-config")
    return yaml.safe_load(cm["data"]["sluice.yaml"])


def sluice_container(deploy: dict) -> dict:
    cs = [c for c in deploy["spec"]["template"]["spec"]["containers"] if c["name"] == "sluice"]
    assert len(cs) == 1
    return cs[0]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request):
    return request.param, render(HERE / "overlays" / request.param)


@needs_kubectl
def test_base_builds():
    objs = render(HERE / "base")
    assert {o["kind"] for o in objs} == {"ServiceAccount", "ConfigMap", "Service", "Deployment"}


@needs_kubectl
def test_kinds(overlay):
    name, objs = overlay
    kinds = {o["kind"] for o in objs}
    assert {"ServiceAccount", "ConfigMap", "Service", "Deployment"} <= kinds
    if name == "ingress":
        assert {"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds
        assert {o["metadata"]["name"] for o in by_kind(objs, "Deployment")} == {"sluice", "redis"}


@needs_kubectl
def test_probes_on_admin_port(overlay):
    _, objs = overlay
    c = sluice_container(one(objs, "Deployment", "sluice"))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "admin": 9090}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"]["port"] in ("admin", 9090)
    # The admin listener must be reachable from the kubelet: not loopback.
    cfg = sluice_config(objs)
    host, port = cfg["admin"]["address"].rsplit(":", 1)
    assert host == "0.0.0.0" and int(port) == ports["admin"]
    assert [int(l["address"].rsplit(":", 1)[1]) for l in cfg["listen"]] == [ports["http"]]


@needs_kubectl
def test_security_context(overlay):
    _, objs = overlay
    d = one(objs, "Deployment", "sluice")
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    sc = sluice_container(d)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    c = sluice_container(d)
    assert "cpu" in c["resources"]["limits"] and "memory" in c["resources"]["limits"]
    assert "cpu" in c["resources"]["requests"] and "memory" in c["resources"]["requests"]
    # /tmp is the one writable place.
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp[0]["name"])


@needs_kubectl
def test_config_mounted_as_directory_at_config_path(overlay):
    _, objs = overlay
    d = one(objs, "Deployment", "sluice")
    pod = d["spec"]["template"]["spec"]
    c = sluice_container(d)
    args = c["args"]
    assert args[0] == "serve"
    config_path = pathlib.PurePosixPath(args[args.index("--config") + 1])
    mounts = [m for m in c["volumeMounts"] if pathlib.PurePosixPath(m["mountPath"]) == config_path.parent]
    assert len(mounts) == 1, f"nothing mounted at {config_path.parent}"
    m = mounts[0]
    assert "subPath" not in m and "subPathExpr" not in m, "a subPath mount never sees ConfigMap updates"
    vol = next(v for v in pod["volumes"] if v["name"] == m["name"])
    cm_name = vol["configMap"]["name"]
    cm = one(objs, "ConfigMap", cm_name)
    assert config_path.name in cm["data"]
    # In-place updates (hot reload) need a stable name: no generator hash suffix.
    assert cm_name == "sluice-config"


@needs_kubectl
def test_grace_period_covers_drain(overlay):
    _, objs = overlay
    d = one(objs, "Deployment", "sluice")
    cfg = sluice_config(objs)
    t = cfg.get("timeouts", {})
    drain = seconds(t.get("drain_delay", "5s")) + seconds(t.get("grace", "30s"))
    grace_period = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace_period > drain, f"terminationGracePeriodSeconds {grace_period} <= drain_delay + grace {drain}"
    # Sluice drains itself: no preStop on its container.
    assert "lifecycle" not in sluice_container(d)


@needs_kubectl
def test_secrets_are_mounted_not_inlined(overlay):
    name, objs = overlay
    d = one(objs, "Deployment", "sluice")
    c = sluice_container(d)
    secret_vols = {v["name"]: v["secret"] for v in d["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    mounted = {m["mountPath"]: m["name"] for m in c["volumeMounts"] if m["name"] in secret_vols}
    cfg = sluice_config(objs)
    text = one(objs, "ConfigMap", "sluice-config")["data"]["sluice.yaml"]
    # Every ${file:...} secret reference lies in a mounted, non-optional Secret.
    for f in re.findall(r"\$\{file:([^}]+)\}", text):
        parent = str(pathlib.PurePosixPath(f).parent)
        assert parent in mounted, f"{f} is not in a mounted Secret"
        assert secret_vols[mounted[parent]].get("optional") is False
    # API keys and the Redis password are references (or a key's SHA-256), never inline.
    for k in cfg.get("auth", {}).get("api_keys", []):
        assert "key_sha256" in k or re.fullmatch(r"\$\{(env|file):[^}]+\}", k.get("key", "")), f"inline API key in {name}"
    url = cfg.get("redis", {}).get("url", "")
    if "@" in url:
        assert "${" in url.split("@")[0], f"inline Redis password in {name}"


@needs_kubectl
def test_ingress_objects_select_the_gateway():
    objs = render(HERE / "overlays" / "ingress")
    d = one(objs, "Deployment", "sluice")
    labels = d["spec"]["template"]["metadata"]["labels"]

    def selects(sel: dict) -> bool:
        return all(labels.get(k) == v for k, v in sel["matchLabels"].items())

    assert d["spec"]["replicas"] >= 2
    assert selects({"matchLabels": one(objs, "Service", "sluice")["spec"]["selector"]})
    pdb = one(objs, "PodDisruptionBudget", "sluice")
    assert pdb["spec"]["minAvailable"] == 1 and selects(pdb["spec"]["selector"])
    hpa = one(objs, "HorizontalPodAutoscaler", "sluice")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sluice"}
    assert hpa["spec"]["minReplicas"] >= 2
    np = one(objs, "NetworkPolicy", "sluice")
    assert selects(np["spec"]["podSelector"])
    ingress_ports = sorted(p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"])
    assert ingress_ports == [8080, 9090]
    egress_ports = sorted({p["port"] for rule in np["spec"]["egress"] for p in rule["ports"]})
    assert egress_ports == [53, 6379, 8000]


@needs_kubectl
def test_ingress_dns_pool_names_the_example_headless_service():
    objs = render(HERE / "overlays" / "ingress")
    ns = one(objs, "Deployment", "sluice")["metadata"]["namespace"]
    cfg = sluice_config(objs)
    examples = [d for d in yaml.safe_load_all((HERE / "examples" / "vllm-pool.yaml").read_text()) if d]
    svc = one(examples, "Service", "vllm-headless")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["metadata"]["namespace"] == ns
    pool = next(p for p in cfg["pools"] if "dns" in p)
    host, port = pool["dns"].rsplit(":", 1)
    assert host == f"vllm-headless.{ns}.svc.cluster.local"
    assert int(port) == svc["spec"]["ports"][0]["port"] == 8000
    vllm = one(examples, "Deployment", "vllm")
    assert "--enable-lora" in vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    # The headless Service selects the vLLM pods.
    pod_labels = vllm["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())


@needs_kubectl
def test_sidecar_talks_over_localhost_and_exposes_only_sluice():
    objs = render(HERE / "overlays" / "sidecar")
    d = one(objs, "Deployment", "sluice")
    containers = {c["name"]: c for c in d["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"sluice", "vllm"}
    vllm = containers["vllm"]
    assert "ports" not in vllm
    args = vllm["args"]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    cfg = sluice_config(objs)
    assert cfg["pools"][0]["endpoints"] == [f"http://127.0.0.1:{args[args.index('--port') + 1]}"]
    svc = one(objs, "Service", "sluice")
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [8080, 9090]


@pytest.mark.parametrize("name", OVERLAYS)
def test_admin_listener_is_not_public(name):
    """Issue 22: the admin listener binds 0.0.0.0 (for probes and scrapes), so every overlay
    either sets admin.token or ships a NetworkPolicy that admits port 9090 only from a
    selected namespace (read from the files: no kubectl needed)."""
    d = HERE / "overlays" / name
    cfg = yaml.safe_load((d / "sluice.yaml").read_text())
    if cfg.get("admin", {}).get("token") or cfg.get("admin", {}).get("token_sha256"):
        return
    resources = yaml.safe_load((d / "kustomization.yaml").read_text()).get("resources", [])
    policies = [doc for r in resources if (d / r).is_file()
                for doc in yaml.safe_load_all((d / r).read_text()) if doc and doc.get("kind") == "NetworkPolicy"]
    assert policies, f"{name}: admin on 0.0.0.0 without admin.token and without a NetworkPolicy"
    admin_rules = [rule for p in policies for rule in p["spec"].get("ingress", [])
                   if any(port.get("port") in (9090, "admin") for port in rule.get("ports", []))]
    assert admin_rules, f"{name}: no NetworkPolicy rule for the admin port"
    for rule in admin_rules:
        for peer in rule.get("from", []):
            sel = peer.get("namespaceSelector")
            assert sel is None or sel.get("matchLabels") or sel.get("matchExpressions"), \
                f"{name}: the admin port is open to every namespace"


@pytest.mark.skipif(not os.environ.get("SLUICE_BIN"), reason="set SLUICE_BIN to run `sluice validate`")
@pytest.mark.parametrize("config", sorted(str(p.relative_to(HERE)) for p in HERE.rglob("sluice.yaml")))
def test_configs_validate(config):
    # Offline: cluster DNS names and mounted Secrets do not exist here.
    r = subprocess.run([os.environ["SLUICE_BIN"], "validate", "--offline", str(HERE / config)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
