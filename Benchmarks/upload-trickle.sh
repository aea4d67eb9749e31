#!/usr/bin/env bash
# What `proxy.body_low_water` saves when large prompts trickle in, as they do from remote
# clients: 220 KB chat bodies sent in 16 KiB pieces with a 1 ms pause between
# (upload_trickle.py), through two Sluice processes identical but for the setting (32KiB, the
# default, and 0 = read as bytes arrive) and through nginx configured as Benchmarks/compare
# configures it, measured alternately so drift on a shared machine hits all alike. The upstream
# reads each whole body before it answers, as a model server does (an nginx that buffers the
# body, then asks a second server block for the fixed response): one that answered early would
# make nginx, which streams bodies through, cut the connection under the rest of the upload.
# Proxies pinned to CPU 0; the clients and the upstream on CPU 1. Prints the proxy CPU time per
# request (every thread, from schedstat) and its ratio to Sluice with the default.
#   Benchmarks/upload-trickle.sh [rounds] [seconds per run] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"; DURATION="${2:-5}"; CONNS="${3:-20}"
. Benchmarks/lib.sh
bench_init upload-trickle
bench_need nginx python3
bench_sluice
UP=18951; ON=18952; OFF=18953; NGX=18954
for pair in "$ON 32KiB" "$OFF 0"; do
  set -- $pair
  cat > "$WORK/$1.yaml" <<YAML
listen: [{ address: "127.0.0.1:$1" }]
admin: { address: "127.0.0.1:$(( $1 + 100 ))" }
workers: 1
proxy: { body_low_water: $2 }
pools: [{ name: default, endpoints: ["http://127.0.0.1:$UP"] }]
YAML
done
mkdir -p "$WORK/ngx"
cat > "$WORK/ngx/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/ngx/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/ngx; proxy_temp_path $WORK/ngx;
  upstream up { server 127.0.0.1:$UP; keepalive 1024; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NGX backlog=4096; keepalive_requests 1000000;
    client_max_body_size 16m; client_body_buffer_size 512k;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; } } }
NGX
start_reading_upstream $UP
taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/$ON.yaml" >"$WORK/on.log" 2>&1 & ON_PID=$!; PIDS+=($ON_PID)
taskset -c "$PROXY_CPU" "$SLUICE" serve --config "$WORK/$OFF.yaml" >"$WORK/off.log" 2>&1 & OFF_PID=$!; PIDS+=($OFF_PID)
taskset -c "$PROXY_CPU" nginx -c "$WORK/ngx/nginx.conf" -p "$WORK/ngx" 2>"$WORK/ngx.log" & NGX_PID=$!; PIDS+=($NGX_PID)
wait_http $UP $ON $OFF $NGX
NGX_WORKER=$(pgrep -P "$NGX_PID")
run() {  # name port pid
  local before after out
  before=$(cpu_ns "$3")
  out=$(taskset -c "$OTHER_CPU" python3 Benchmarks/upload_trickle.py "$2" --conns "$CONNS" --seconds "$DURATION")
  after=$(cpu_ns "$3")
  set -- "$1" $out
  echo "$1 $2 $3 $4 $(( after - before ))" >> "$WORK/summary"
  printf "%-16s %6d requests in %5.2f s, %d failed\n" "$1" "$2" "$3" "$4"
}
for r in $(seq "$ROUNDS"); do
  run sluice $ON $ON_PID
  run sluice-no-mark $OFF $OFF_PID
  run nginx $NGX "$NGX_WORKER"
done
awk '
  { reqs[$1] += $2; fails[$1] += $4; ns[$1] += $5 }
  END {
    base = ns["sluice"] / 1000 / reqs["sluice"]
    printf "\nproxy CPU per request, %s rounds (ratio to sluice with body_low_water 32KiB):\n", NR / 3
    for (k in reqs) printf "  %-16s %7.1f us  %5.2fx  (%d failed)\n", k, ns[k] / 1000 / reqs[k], ns[k] / 1000 / reqs[k] / base, fails[k]
  }' "$WORK/summary"
