#!/usr/bin/env bash
# What Prometheus metrics cost (issue 6: at most 2 % of proxy throughput), in one run: two
# Sluice processes in front of the same nginx fixed-response upstream, identical but for
# `admin.metrics` (on / off), measured alternately (on, off, on, off, ...) with wrk so drift on
# a shared machine hits both alike. Both pinned to CPU 0; wrk and nginx on CPU 1.
#   Benchmarks/metrics-cost.sh [rounds] [seconds per run] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"; DURATION="${2:-5}"; CONNS="${3:-32}"
. Benchmarks/lib.sh
bench_init metrics-bench
bench_need wrk nginx
bench_sluice
UP=18941; ON=18942; OFF=18943
write_chat_lua "$WORK/post.lua"
for pair in "$ON true" "$OFF false"; do
  set -- $pair
  cat > "$WORK/$1.yaml" <<YAML
listen: [{ address: "127.0.0.1:$1" }]
admin: { address: "127.0.0.1:$(( $1 + 100 ))", metrics: $2 }
workers: 1
telemetry: { interval: 0 }
health: { interval: 0 }
pools: [{ name: default, endpoints: ["http://127.0.0.1:$UP"] }]
YAML
done
start_fixed_upstream $UP
taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/$ON.yaml" >"$WORK/on.log" 2>&1 & ON_PID=$!; PIDS+=($ON_PID)
taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/$OFF.yaml" >"$WORK/off.log" 2>&1 & OFF_PID=$!; PIDS+=($OFF_PID)
wait_http $UP $ON $OFF
curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(( OFF + 100 ))/metrics" | grep -q 404 || { echo "metrics are not off"; exit 1; }
run() {  # name port pid
  local before after
  before=$(cpu_ticks "$3")
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$WORK/post.lua" "http://127.0.0.1:$2/v1/chat/completions" >"$WORK/run.txt"
  after=$(cpu_ticks "$3")
  local rps reqs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/run.txt")
  reqs=$(awk '/requests in/ {print $1}' "$WORK/run.txt")
  echo "$1 $rps $(( after - before )) $reqs" >> "$WORK/summary"
  printf "%-4s %10s req/s\n" "$1" "$rps"
}
for name in on off; do taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$([ $name = on ] && echo $ON || echo $OFF)/v1/chat/completions" >/dev/null; done
for r in $(seq "$ROUNDS"); do
  run on $ON $ON_PID
  run off $OFF $OFF_PID
done
awk -v hz="$(getconf CLK_TCK)" '
  { rps[$1] += $2; n[$1]++; ticks[$1] += $3; reqs[$1] += $4 }
  END {
    on = rps["on"] / n["on"]; off = rps["off"] / n["off"]
    cpu_on = ticks["on"] / hz * 1e6 / reqs["on"]; cpu_off = ticks["off"] / hz * 1e6 / reqs["off"]
    printf "\nmean of %d rounds: metrics on %.0f req/s, off %.0f req/s: throughput cost %.2f %% (target <= 2 %%)\n", n["on"], on, off, (1 - on / off) * 100
    printf "CPU per request: on %.2f us, off %.2f us (%+.2f %%)\n", cpu_on, cpu_off, (cpu_on / cpu_off - 1) * 100
  }' "$WORK/summary"
