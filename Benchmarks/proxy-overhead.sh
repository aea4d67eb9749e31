#!/usr/bin/env bash
# Proxy overhead, measured side by side in one run (the machines are shared and noisy, so only
# ratios between runs of the same invocation mean anything):
#   direct : wrk -> upstream
#   sluice : wrk -> sluice (1 worker) -> upstream
#   nginx  : wrk -> nginx (1 worker, keepalive upstreams, access log off) -> upstream
# The upstream is nginx returning a fixed JSON body (fast, so the proxy is what is measured).
# Prints requests/s, latency p50/p99 and the proxy's CPU time per request, and Sluice/nginx
# ratios. Sluice and nginx run ROUNDS times, alternately (a burst of load from a neighbour hits
# one run, not one proxy), and the ratios are the medians of the per-round ratios.
# Usage: Benchmarks/proxy-overhead.sh [seconds] [connections] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-32}"
ROUNDS="${3:-3}"
. Benchmarks/lib.sh
bench_init bench

bench_need wrk nginx
bench_sluice

UP_PORT=18901; SLUICE_PORT=18902; NGINX_PORT=18903

mkdir -p "$WORK/px"
cat > "$WORK/px/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/px/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/px; proxy_temp_path $WORK/px;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096; keepalive_requests 1000000;
    location / { client_body_buffer_size 64k; proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; } } }
NGX
write_chat_lua "$WORK/post.lua"

start_fixed_upstream $UP_PORT
taskset -c "$PROXY_CPU" nginx -c "$WORK/px/nginx.conf" -p "$WORK/px" & PIDS+=($!)
taskset -c "$PROXY_CPU" "$SLUICE" serve --workers 1 --listen "127.0.0.1:$SLUICE_PORT" --endpoint "http://127.0.0.1:$UP_PORT" >"$WORK/sluice.log" 2>&1 & SLUICE_PID=$!; PIDS+=($SLUICE_PID)
wait_http $UP_PORT $NGINX_PORT $SLUICE_PORT
NGINX_PROXY_PID=$(cat "$WORK/px/nginx.pid")
# nginx's worker is the child of the master; its CPU is what we compare.
NGINX_WORKER_PID=$(pgrep -P "$NGINX_PROXY_PID" | head -1)

run() {  # name port pid
  local name=$1 port=$2 pid=${3:-}
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null  # warm-up
  local before=0; [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  taskset -c "$OTHER_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$port/v1/chat/completions" >"$WORK/$name.txt"
  local after=0; [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  local reqs rps p50 p99 errs
  reqs=$(awk '/requests in/ {print $1}' "$WORK/$name.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$WORK/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$WORK/$name.txt")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' "$WORK/$name.txt" | tr '\n' ' ')
  local cpu_us="-"
  if [ -n "$pid" ]; then cpu_us=$(awk -v t=$((after - before)) -v r="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}'); fi
  printf "%-8s %12s %10s %10s %14s  %s\n" "$name" "$rps" "$p50" "$p99" "$cpu_us" "$errs"
  echo "$name $rps $cpu_us" >> "$WORK/summary"
}

echo "proxy overhead: small JSON POST, ${DURATION}s, $CONNS connections, proxy on CPU $PROXY_CPU, wrk+upstream on CPU $OTHER_CPU"
printf "%-8s %12s %10s %10s %14s\n" run "req/s" p50 p99 "proxy CPU us/req"
run direct $UP_PORT
for r in $(seq 1 "$ROUNDS"); do
  run sluice $SLUICE_PORT $SLUICE_PID
  run nginx $NGINX_PORT "$NGINX_WORKER_PID"
done
# Per round: sluice/nginx for throughput and CPU; then the medians.
awk '$1=="sluice"{s_r[++ns]=$2; s_c[ns]=$3} $1=="nginx"{n_r[++nn]=$2; n_c[nn]=$3}
  function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  END { for (i = 1; i <= ns; i++) { tr[i] = s_r[i] / n_r[i]; cr[i] = s_c[i] / n_c[i]
          printf "round %d: throughput sluice/nginx = %.2f, CPU per request sluice/nginx = %.2f\n", i, tr[i], cr[i] }
        printf "ratios (median of %d rounds): throughput sluice/nginx = %.2f (target >= 1.0), CPU per request sluice/nginx = %.2f (target <= 1.0)\n", ns, median(tr, ns), median(cr, ns) }' "$WORK/summary"
