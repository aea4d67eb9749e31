#!/usr/bin/env bash
# Response cache and rate limiter cost, measured side by side in one run (issue 7):
#   direct  : wrk -> upstream (nginx returning a fixed chat completion)
#   proxy   : wrk -> sluice (no Redis) -> upstream               (the baseline)
#   hit     : wrk -> sluice -> Redis (every request a cache hit)  (the pool is never asked)
#   limited : wrk -> sluice (a requests + tokens limit, high enough never to deny) -> upstream
# For each: requests/s and latency p50/p99 at one connection (the latency a client sees) and at
# CONNS connections (throughput). For `limited`, Redis's own command counters give the EVALSHA
# calls per request: one before forwarding (all limits checked and charged at once: one round
# trip on the request's path) and one token settlement after the response (off the path).
# Usage: Benchmarks/redis-cache.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-5}"
CONNS="${2:-16}"
. Benchmarks/lib.sh
bench_init redis-bench

bench_need wrk nginx redis-server redis-cli curl
bench_sluice

UP_PORT=18931; REDIS_PORT=18932; PROXY_PORT=18933; HIT_PORT=18934; LIMIT_PORT=18935
write_chat_lua "$WORK/post.lua" 'wrk.headers["Authorization"] = "Bearer sk-bench"'
common() {  # port
  cat <<YAML
listen: [{ address: "127.0.0.1:$1" }]
admin: { address: "127.0.0.1:$(( $1 + 100 ))" }
workers: 1
telemetry: { interval: 0 }
health: { interval: 0 }
pools: [{ name: default, endpoints: ["http://127.0.0.1:$UP_PORT"] }]
YAML
}
common $PROXY_PORT > "$WORK/proxy.yaml"
{ common $HIT_PORT; echo "redis: { url: \"redis://127.0.0.1:$REDIS_PORT\" }"; echo "cache: { enabled: true, ttl: 1h }"; } > "$WORK/hit.yaml"
{ common $LIMIT_PORT; echo "redis: { url: \"redis://127.0.0.1:$REDIS_PORT\" }"
  echo "rate_limits: [{ tenant: \"*\", requests_per_minute: 100000000, tokens_per_minute: 1000000000 }]"; } > "$WORK/limited.yaml"

start_fixed_upstream $UP_PORT
taskset -c "$OTHER_CPU" redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no --loglevel warning >/dev/null & PIDS+=($!)
for name in proxy hit limited; do
  taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/$name.yaml" >"$WORK/$name.log" 2>&1 & PIDS+=($!)
done
wait_http $UP_PORT $PROXY_PORT $HIT_PORT $LIMIT_PORT
for _ in $(seq 50); do redis-cli -p $REDIS_PORT ping >/dev/null 2>&1 && break; sleep 0.1; done

# Warm the cache entry and check that the hit path really hits.
post() { curl -s -D - -o /dev/null -H 'Content-Type: application/json' -H 'Authorization: Bearer sk-bench' \
  --data '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8,"temperature":0}' \
  "http://127.0.0.1:$1/v1/chat/completions"; }
post $HIT_PORT >/dev/null; sleep 0.2
post $HIT_PORT | grep -qi '^x-sluice-cache: hit' || { echo "the cache did not hit"; cat "$WORK/hit.log"; exit 1; }

redis_calls() { redis-cli -p $REDIS_PORT info commandstats | tr -d '\r' | awk -F'[=,:]' -v c="cmdstat_$1" '$1==c {print $3}'; }

printf "%-8s %5s %12s %10s %10s  %s\n" case conns "req/s" p50 p99 errors
run() {  # name port conns
  local name=$1 port=$2 conns=$3
  taskset -c "$OTHER_CPU" wrk -t1 -c"$conns" -d1s -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
  sleep 0.2
  redis-cli -p $REDIS_PORT config resetstat >/dev/null
  taskset -c "$OTHER_CPU" wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >"$WORK/$name-$conns.txt"
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name-$conns.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name-$conns.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name-$conns.txt")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/$name-$conns.txt" | tr '\n' ' ')
  printf "%-8s %5s %12s %10s %10s  %s\n" "$name" "$conns" "$rps" "$p50" "$p99" "$errs"
  echo "$name $conns $rps $p50" >> "$WORK/summary"
}
for conns in 1 "$CONNS"; do
  run direct $UP_PORT "$conns"
  run proxy $PROXY_PORT "$conns"
  run hit $HIT_PORT "$conns"
  run limited $LIMIT_PORT "$conns"
  sleep 0.3
  reqs=$(awk '/requests in/ {print $1}' "$WORK/limited-$conns.txt")
  awk -v e="$(redis_calls evalsha)" -v r="$reqs" 'BEGIN {
    printf "   limited: %.2f EVALSHA per request (admission check, then token settlement after the response)\n", e / r }'
done

# Latency ratios at one connection (p50 in µs), and whether the hit target (p50 <= 0.5 ms) holds.
awk '
  function us(v) { if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000; if (v ~ /s$/) return v * 1e6; return v }
  $2 == 1 { p[$1] = us($4) }
  END {
    printf "\none connection, p50: direct %.0fus, proxy %.0fus, hit %.0fus, limited %.0fus\n", p["direct"], p["proxy"], p["hit"], p["limited"]
    printf "hit / proxy p50: %.2fx; limited - proxy p50: %+.0fus (one Redis round trip)\n", p["hit"] / p["proxy"], p["limited"] - p["proxy"]
    printf "cache hit p50 <= 500us: %s\n", (p["hit"] <= 500 ? "yes" : "NO")
  }' "$WORK/summary"
