#!/usr/bin/env bash
# Load and soak runs of issue 9, against the release binary, on loopback:
#
#  idle : normal traffic (wrk, small chat POSTs) with and without 10,000 idle keep-alive
#         connections plus 1,000 slowloris connections (a request head dribbled one byte per
#         second, replaced whenever Sluice times it out). ROUNDS rounds of (baseline run, loaded
#         run, control run) in one invocation; target: median loaded p99 <= 2x median baseline
#         p99. (Rounds and medians because the machine is shared: one noisy neighbour can stall
#         a single run.) The control run points the same holder at a decoy sluice on the
#         load-generator CPU: the client side pays the same, the measured sluice carries nothing.
#  reload: RELOADS (default 400) config rewrites that each swap one of two endpoints, under
#         keep-alive load (soak.d/reload_soak.py): open fds and VmRSS per quarter. With an
#         AddressSanitizer build as SLUICE_BIN, LeakSanitizer's exit report shows what leaked.
#  soak : REQUESTS requests (default 1,000,000; ~90% non-streaming POSTs via wrk, ~10% streaming
#         via soak.d/stream_count.py) through ONE sluice process, in ten equal phases; VmRSS
#         after each phase. Target: RSS at the end within 10% of RSS after the first 100,000
#         (the first phase when REQUESTS is 1,000,000).
#
# Upstreams: nginx returning a fixed chat completion (like proxy-overhead.sh) and
# compare.d/sse_upstream.py for streams; Sluice routes by model name (tiny -> nginx,
# tiny-stream -> SSE). Sluice is pinned to CPU 0, everything else to CPU 1. While the idle
# section measures it holds the shared build lock (/tmp/sluice-build.lock), so other builds on
# the machine wait instead of distorting latency; the soak section (memory, not latency) does not.
#
# Usage: Benchmarks/soak.sh [--section idle|soak|reload|all] [--requests N] [--idle N]
#          [--slowloris N] [--duration S] [--rounds R] [--reloads N] [--conns C] [--out FILE]
# The binary is $SLUICE_BIN if set, else `swift build -c release` (under the build lock).
# Ports 18951-18956. Needs wrk, nginx, python3 (stdlib only), taskset. SOAK_KEEP=1 keeps the
# work directory (wrk outputs, logs) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

SECTION=all
REQUESTS=1000000
IDLE=10000
SLOWLORIS=1000
DURATION=10
ROUNDS=3
RELOADS=400
CONNS=32
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --section) SECTION="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --idle) IDLE="$2"; shift 2 ;;
    --slowloris) SLOWLORIS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --reloads) RELOADS="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null && command -v nginx >/dev/null && command -v taskset >/dev/null \
  || { echo "needs wrk, nginx and taskset (bash .ci/setup)"; exit 1; }
PY="${SLUICE_PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
LOCK=/tmp/sluice-build.lock
if [ -n "${SLUICE_BIN:-}" ]; then
  SLUICE="$SLUICE_BIN"
else
  flock "$LOCK" swift build -c release --product sluice >/dev/null
  SLUICE="$(swift build -c release --show-bin-path)/sluice"
fi

# File descriptors: the holder and Sluice each need IDLE + SLOWLORIS + a few hundred.
HARD=$(ulimit -Hn)
ulimit -n "$HARD"
NEED=$((IDLE + SLOWLORIS + 1000))
if [ "$HARD" != unlimited ] && [ "$NEED" -gt "$HARD" ]; then
  echo "fd hard limit $HARD < $NEED needed: scaling idle/slowloris down" >&2
  scale=$(( (HARD - 1000) * 1000 / (IDLE + SLOWLORIS) ))
  IDLE=$((IDLE * scale / 1000)); SLOWLORIS=$((SLOWLORIS * scale / 1000))
fi

WORK="$(mktemp -d /tmp/sluice-soak.XXXXXX)"
PIDS=()
LOCKED=0
cleanup() {
  [ "$LOCKED" = 1 ] && flock -u 9 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${SOAK_KEEP:-}" ]; then echo "work files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
forget() {  # a process was waited for: never signal its (reusable) PID again
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

UP_PORT=18951; SSE_PORT=18952; PORT=18953; ADMIN=18954; DECOY_PORT=18955; DECOY_ADMIN=18956
NCPU=$(nproc)
PROXY_CPU=0
OTHER_CPU=$(( NCPU > 1 ? 1 : 0 ))
BODY='{"id":"chatcmpl-1","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}'
report() { echo "$*"; [ -z "$OUT" ] || echo "$*" >> "$OUT"; }

# nginx listens with reuseport, which would silently share a port someone else is using.
for port in $UP_PORT $SSE_PORT $PORT $ADMIN $DECOY_PORT $DECOY_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is in use: stop whatever listens there first" >&2; exit 1; fi
done

mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/up/nginx.pid; error_log stderr error;
worker_rlimit_nofile 4096;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP_PORT reuseport backlog=4096; keepalive_requests 10000000;
    location / { client_body_buffer_size 64k; default_type application/json; return 200 '$BODY'; } } }
NGX
cat > "$WORK/sluice.yaml" <<YAML
listen: [{ address: "127.0.0.1:$PORT" }]
admin: { address: "127.0.0.1:$ADMIN" }
workers: 1
timeouts: { drain_delay: 0s }
telemetry: { interval: 0 }
pools:
  - { name: fixed, endpoints: ["http://127.0.0.1:$UP_PORT"] }
  - { name: sse, endpoints: ["http://127.0.0.1:$SSE_PORT"] }
models:
  - { name: tiny, pool: fixed }
  - { name: tiny-stream, pool: sse, upstream_model: tiny }
YAML
# A POST script that can also stop after SOAK_LIMIT responses (it writes SOAK_MARKER; the
# shell then interrupts wrk, which prints its report): wrk itself only knows durations.
cat > "$WORK/post.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8,"temperature":0}'
wrk.headers["Content-Type"] = "application/json"
local limit = tonumber(os.getenv("SOAK_LIMIT") or "0")
local marker = os.getenv("SOAK_MARKER")
if limit > 0 then
  local n = 0
  function response(status, headers, body)
    n = n + 1
    if n == limit then
      local f = io.open(marker, "w"); f:write("done\n"); f:close()
      wrk.thread:stop()
    end
  end
end
LUA

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open" >&2; return 1
}

taskset -c "$OTHER_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" 2>"$WORK/nginx.log" & PIDS+=($!)
taskset -c "$OTHER_CPU" "$PY" Benchmarks/compare.d/sse_upstream.py --port "$SSE_PORT" --interval-ms 1 >"$WORK/sse.log" 2>&1 & PIDS+=($!)
wait_port "$UP_PORT"; wait_port "$SSE_PORT"

SLUICE_PID=""
start_sluice() {
  taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/sluice.yaml" >"$WORK/sluice-$1.log" 2>&1 &
  SLUICE_PID=$!; PIDS+=($SLUICE_PID)
  wait_port "$PORT"
}
stop_sluice() {
  kill -TERM "$SLUICE_PID"; wait "$SLUICE_PID" || true
  forget "$SLUICE_PID"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SLUICE_PID/status"; }
fds() { ls "/proc/$SLUICE_PID/fd" | wc -l; }
to_ms() {  # wrk prints 812.00us, 1.23ms, 1.02s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
lock() {
  exec 9>"$LOCK"
  if flock -w 900 9; then LOCKED=1; else echo "(build lock not acquired in 900 s: measuring without it)" >&2; fi
}
unlock() { [ "$LOCKED" = 1 ] && flock -u 9; LOCKED=0; exec 9>&-; }

machine() {
  report "date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  report "sluice: $SLUICE ($("$SLUICE" --version 2>/dev/null || echo '?')); repo at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)'); fd hard limit $HARD"
}

# ---------------------------------------------------------------------------------------------
# idle: idle keep-alive + slowloris connections while wrk drives normal traffic

wrk_run() {  # name -> prints "name rps p50 p99 errors"
  local name=$1
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
    "http://127.0.0.1:$PORT/v1/chat/completions" 9>&- >"$WORK/wrk-$name.txt"
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-$name.txt")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$WORK/wrk-$name.txt")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$WORK/wrk-$name.txt")")
  errs=$(awk '/Non-2xx|Socket errors/ {printf "%s; ", $0}' "$WORK/wrk-$name.txt")
  echo "$name $rps $p50 $p99 ${errs:-none}"
}

hold() {  # port label -> starts the holder against port; sets HOLDER_PID once it is ready
  rm -f "$WORK/ready"
  taskset -c "$OTHER_CPU" "$PY" Benchmarks/soak.d/hold.py --port "$1" --idle "$IDLE" --slowloris "$SLOWLORIS" \
    --ready-file "$WORK/ready" --duration 900 9>&- >"$WORK/hold-$2.json" 2>"$WORK/hold-$2.err" &
  HOLDER_PID=$!; PIDS+=($HOLDER_PID)
  for _ in $(seq 1200); do [ -s "$WORK/ready" ] && break; sleep 0.1; done
  [ -s "$WORK/ready" ] || { echo "holder not ready: $(cat "$WORK/hold-$2.err")" >&2; exit 1; }
  # Past the connection burst; the slowloris heads are dribbling, and their client-header
  # timeout (10 s: 408, then the holder reconnects all of them at once) falls inside the run.
  sleep 3
}
unhold() {
  kill -TERM "$HOLDER_PID"; wait "$HOLDER_PID" || true
  forget "$HOLDER_PID"
  sleep 2  # the 11,000 connections close
}

section_idle() {
  report ""
  report "## idle + slowloris: $IDLE idle keep-alive and $SLOWLORIS slowloris connections; wrk -t1 -c$CONNS ${DURATION}s per run, $ROUNDS rounds of baseline, loaded, control"
  report "(control: the same holder against a decoy sluice on the load-generator CPU, so the client side pays the same but the measured sluice carries none of the connections)"
  start_sluice idle
  sed -e "s/127.0.0.1:$PORT/127.0.0.1:$DECOY_PORT/" -e "s/127.0.0.1:$ADMIN/127.0.0.1:$DECOY_ADMIN/" "$WORK/sluice.yaml" >"$WORK/decoy.yaml"
  taskset -c "$OTHER_CPU" "$SLUICE" serve --config "$WORK/decoy.yaml" >"$WORK/sluice-decoy.log" 2>&1 &
  local decoy_pid=$!; PIDS+=($decoy_pid)
  wait_port "$DECOY_PORT"
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null  # warm-up
  lock
  local runs=() k r notes=()
  for k in $(seq 1 "$ROUNDS"); do
    r=$(wrk_run "baseline-$k"); runs+=("$r $(cut -d' ' -f1 /proc/loadavg)")
    hold "$PORT" "$k"
    notes+=("round $k: holder $(cat "$WORK/ready"); sluice fds before the loaded run $(fds)")
    r=$(wrk_run "loaded-$k"); runs+=("$r $(cut -d' ' -f1 /proc/loadavg)")
    notes+=("round $k: sluice fds after $(fds), VmRSS $(rss_kb) kB")
    unhold
    notes+=("round $k: holder at end $(cat "$WORK/hold-$k.json")")
    hold "$DECOY_PORT" "control-$k"
    r=$(wrk_run "control-$k"); runs+=("$r $(cut -d' ' -f1 /proc/loadavg)")
    unhold
  done
  unlock
  kill -TERM "$decoy_pid"; wait "$decoy_pid" || true; forget "$decoy_pid"
  local n
  for n in "${notes[@]}"; do report "$n"; done
  report ""
  report "| run | req/s | p50 ms | p99 ms | load avg (1 min) after | errors |"
  report "|---|---|---|---|---|---|"
  for r in "${runs[@]}"; do
    set -- $r
    local name=$1 rps=$2 p50=$3 p99=$4 la=${!#}
    shift 4
    report "| $name | $rps | $p50 | $p99 | $la | ${*%$la} |"
  done
  report ""
  report "$(printf '%s\n' "${runs[@]}" | awk '
    { split($1, a, "-"); v[a[1]] = v[a[1]] " " $4 }
    function median(s,   x, n, i, j, t) { n = split(s, x, " "); for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] + 0 < x[i] + 0) { t = x[i]; x[i] = x[j]; x[j] = t }
      return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
    END { b = median(v["baseline"]); l = median(v["loaded"]); c = median(v["control"]); r = l / b;
      printf "median p99: baseline %.3f ms, loaded %.3f ms, control %.3f ms; loaded / baseline = %.2f (target <= 2.0): %s; loaded / control = %.2f", b, l, c, r, (r <= 2.0 ? "PASS" : "FAIL"), l / c }')"
  stop_sluice
}

# ---------------------------------------------------------------------------------------------
# soak: REQUESTS requests through one process; RSS per phase

section_soak() {
  local phases=10 step
  step=$((REQUESTS / phases))
  report ""
  report "## soak: $REQUESTS requests (~90% non-streaming POST via wrk -c$CONNS, ~10% streaming, 8 events each, via stream_count.py -c32) in $phases phases through one sluice process"
  start_sluice soak
  report "RSS after start: $(rss_kb) kB"
  report ""
  report "| phase | requests so far | wrk requests | streams | errors | phase s | VmRSS kB |"
  report "|---|---|---|---|---|---|---|"
  local total=0 rss_first="" rss_last="" t0 t1 k wrk_n st_n wrk_pid wrk_done streams errs
  for k in $(seq 1 $phases); do
    wrk_n=$((step * 9 / 10)); st_n=$((step - wrk_n))
    rm -f "$WORK/marker"
    t0=$(date +%s.%N)
    SOAK_LIMIT=$wrk_n SOAK_MARKER="$WORK/marker" taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d3600s \
      -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/chat/completions" >"$WORK/soak-wrk.txt" &
    wrk_pid=$!; PIDS+=($wrk_pid)
    taskset -c "$OTHER_CPU" "$PY" Benchmarks/soak.d/stream_count.py --port "$PORT" --count "$st_n" --conns 32 \
      >"$WORK/soak-streams.json"
    while [ ! -f "$WORK/marker" ] && kill -0 "$wrk_pid" 2>/dev/null; do sleep 0.05; done
    kill -INT "$wrk_pid" 2>/dev/null || true; wait "$wrk_pid" || true
    forget "$wrk_pid"
    t1=$(date +%s.%N)
    wrk_done=$(awk '/requests in/ {print $1}' "$WORK/soak-wrk.txt")
    streams=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["streams"])' "$WORK/soak-streams.json")
    errs="$(awk '/Non-2xx|Socket errors/ {printf "wrk %s; ", $0}' "$WORK/soak-wrk.txt")$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(("streams: %d (%s)" % (d["errors"], d["last_error"])) if d["errors"] else "")' "$WORK/soak-streams.json")"
    errs="${errs:-none}"
    total=$((total + wrk_done + streams))
    rss_last=$(rss_kb)
    [ -n "$rss_first" ] || rss_first=$rss_last
    report "| $k | $total | $wrk_done | $streams | $errs | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') | $rss_last |"
  done
  report ""
  report "$(awk -v a="$rss_first" -v b="$rss_last" -v s="$step" 'BEGIN { d = (b - a) / a * 100;
    printf "VmRSS after the first %d requests: %d kB; at the end: %d kB; change %+.1f%% (target within 10%%): %s", s, a, b, d, (d <= 10 && d >= -10 ? "PASS" : "FAIL") }')"
  report "sluice CPU time: $(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f s", ($14 + $15) / hz}' "/proc/$SLUICE_PID/stat"); open fds at the end: $(fds)"
  stop_sluice
}

# ---------------------------------------------------------------------------------------------
# reload: config rewrites under keep-alive load (fds and RSS must stay flat)

section_reload() {
  report ""
  report "## reload: $RELOADS config rewrites under keep-alive load (soak.d/reload_soak.py)"
  local line
  while IFS= read -r line; do report "    $line"; done < <("$PY" Benchmarks/soak.d/reload_soak.py --sluice "$SLUICE" \
    --reloads "$RELOADS" --port "$PORT" --admin "$ADMIN" 2>&1)
}

machine
case "$SECTION" in
  idle) section_idle ;;
  soak) section_soak ;;
  reload) section_reload ;;
  all) section_idle; section_soak; section_reload ;;
  *) echo "unknown section $SECTION" >&2; exit 2 ;;
esac
