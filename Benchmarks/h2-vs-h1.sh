#!/usr/bin/env bash
# HTTP/2 through Sluice vs HTTP/1.1 through Sluice (issue 8), same run, same upstream: h2load
# with small chat POSTs, as h2c (16 connections × 32 concurrent streams) and as HTTP/1.1
# keep-alive (h2load --h1, 16 connections, one request at a time each, and 512 connections for
# the same concurrency as h2). Requests/s and Sluice's CPU time per request (its /proc counters).
# Sluice pinned to CPU 0; h2load and the nginx upstream on CPU 1.
#   Benchmarks/h2-vs-h1.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
WORK="$(mktemp -d /tmp/sluice-h2h1.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
command -v h2load >/dev/null && command -v nginx >/dev/null || { echo "needs h2load and nginx (bash .ci/setup)"; exit 1; }
swift build -c release --product sluice >/dev/null
SLUICE="$(swift build -c release --show-bin-path)/sluice"
NCPU=$(nproc); OTHER_CPU=$(( NCPU > 1 ? 1 : 0 ))
UP=18981; PORT=18982
BODY='{"id":"chatcmpl-1","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}'
mkdir -p "$WORK/up"
cat > "$WORK/up/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/up/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up;
  server { listen 127.0.0.1:$UP reuseport backlog=4096; keepalive_requests 1000000;
    location / { client_body_buffer_size 64k; default_type application/json; return 200 '$BODY'; } } }
NGX
printf '%s' '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8}' > "$WORK/body.json"
taskset -c "$OTHER_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
taskset -c 0 "$SLUICE" serve --workers 1 --listen "127.0.0.1:$PORT" --endpoint "http://127.0.0.1:$UP" --admin "127.0.0.1:$((PORT + 100))" --drain-delay 0s >"$WORK/sluice.log" 2>&1 & SL=$!; PIDS+=($SL)
for p in $UP $PORT; do for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/" && break; sleep 0.1; done; done
RUN=0
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() {  # name, h2load args...
  local name=$1; shift
  RUN=$((RUN + 1)); local out="$WORK/run$RUN.txt"
  taskset -c "$OTHER_CPU" h2load -n 5000 "$@" -d "$WORK/body.json" -H 'content-type: application/json' "http://127.0.0.1:$PORT/v1/chat/completions" >/dev/null
  local before after
  before=$(cpu_ticks $SL)
  taskset -c "$OTHER_CPU" h2load -n "$N" "$@" -d "$WORK/body.json" -H 'content-type: application/json' "http://127.0.0.1:$PORT/v1/chat/completions" >"$out"
  after=$(cpu_ticks $SL)
  local rps ok
  rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$out")
  ok=$(awk '/requests:/ {print $8}' "$out")
  local cpu; cpu=$(awk -v t=$((after - before)) -v n="$ok" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  printf "%-28s %10s req/s %8s us CPU/req  %s succeeded of %s\n" "$name" "$rps" "$cpu" "$ok" "$N"
  echo "$name $rps $cpu" >> "$WORK/summary"
}
run "h2c 16 conns x 32 streams" -c 16 -m 32
run "http/1.1 16 conns" --h1 -c 16 -m 1
run "http/1.1 512 conns" --h1 -c 512 -m 1
awk '{ rps[NR] = $(NF-1); cpu[NR] = $NF } END {
  printf "\nh2 / http1.1 (16 conns): %.2fx requests/s, %.2fx CPU per request; h2 / http1.1 (512 conns): %.2fx, %.2fx\n",
    rps[1] / rps[2], cpu[1] / cpu[2], rps[1] / rps[3], cpu[1] / cpu[3] }' "$WORK/summary"
