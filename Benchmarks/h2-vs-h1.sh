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
. Benchmarks/lib.sh
bench_init h2h1
bench_need h2load nginx
bench_sluice
UP=18981; PORT=18982
printf '%s' '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8}' > "$WORK/body.json"
start_fixed_upstream $UP
taskset -c "$PROXY_CPU" "$SLUICE" serve --workers 1 --listen "127.0.0.1:$PORT" --endpoint "http://127.0.0.1:$UP" --admin "127.0.0.1:$((PORT + 100))" --drain-delay 0s >"$WORK/sluice.log" 2>&1 & SL=$!; PIDS+=($SL)
wait_http $UP $PORT
RUN=0
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
