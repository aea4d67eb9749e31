#!/usr/bin/env bash
# User-space instructions per proxied request, Sluice and nginx, counted by valgrind (callgrind):
# the deterministic side of `proxy-overhead.sh`. CPU time on a shared machine moves by ±10 % from
# run to run; instruction counts move by well under 1 %, so they show what a hot-path change did.
# Kernel work (the larger part of a proxy's CPU time: TCP on loopback) is not counted here.
#
# Each proxy runs under callgrind twice, for N1 and N2 small chat POSTs (h2load, 8 connections),
# in front of the fixed-response nginx upstream; the difference of the two totals divided by
# N2 - N1 is the cost of one request, with start-up and shutdown cancelled out.
#
#   bash Benchmarks/instructions.sh [N1] [N2]      (defaults 2000 12000; about a minute)
#   bash Benchmarks/instructions.sh --big [N1] [N2]
#       compare's section 3 body instead: a 220 KB chat prompt (defaults 300 1300; about a minute);
#       both proxies then take bodies that size (nginx as compare configures it: a 512 KiB body
#       buffer, request buffering off)
#   bash Benchmarks/instructions.sh --body FILE [N1] [N2]     any request body (same nginx setup)
#   bash Benchmarks/instructions.sh --sse [S1] [S2]
#       per relayed SSE event instead: compare's section 1b (16 streams of 16 events, 20 ms apart,
#       from Benchmarks/compare.d/sse_upstream.py) for S1 and S2 seconds (defaults 3 9), the
#       difference divided by the extra events; Sluice reads every event (TTFT, token gaps,
#       usage), nginx relays them unread
# KEEP=DIR keeps the callgrind profiles there (callgrind_annotate DIR/sluice.N2.cg: where they go).
set -euo pipefail
cd "$(dirname "$0")/.."
BODY=""; SSE=0
case "${1:-}" in
  --big) BODY=big; shift ;;
  --body) BODY="$2"; shift 2 ;;
  --sse) SSE=1; shift ;;
esac
if [ "$SSE" = 1 ]; then N1="${1:-3}"; N2="${2:-9}"; elif [ -n "$BODY" ]; then N1="${1:-300}"; N2="${2:-1300}"; else N1="${1:-2000}"; N2="${2:-12000}"; fi
. Benchmarks/lib.sh
bench_init instructions

bench_need valgrind callgrind_annotate h2load nginx
bench_sluice

UP_PORT=18911; PORT=18912
if [ "$SSE" = 1 ]; then
  python3 Benchmarks/compare.d/sse_upstream.py --port $UP_PORT --interval-ms 20 >"$WORK/upstream.log" 2>&1 &
  PIDS+=($!)
else
  start_fixed_upstream $UP_PORT
fi
NGX_BODY="client_body_buffer_size 64k;"
if [ "$BODY" = big ]; then  # the body of Benchmarks/compare.d/compare.py section_large_prompts
  python3 -c 'import json, sys
filler = ("The quick brown fox jumps over the lazy dog. " * 5000)[:220 * 1024]
json.dump({"model": "tiny", "messages": [{"role": "system", "content": filler},
                                         {"role": "user", "content": "Summarize."}], "max_tokens": 8}, sys.stdout)' > "$WORK/body.json"
elif [ -n "$BODY" ]; then
  cp "$BODY" "$WORK/body.json"
else
  printf '%s' '{"model":"tiny","messages":[{"role":"user","content":"Say hello in one word."}],"max_tokens":8,"temperature":0}' > "$WORK/body.json"
fi
if [ -n "$BODY" ]; then NGX_BODY="client_max_body_size 16m; client_body_buffer_size 512k; proxy_request_buffering off;"; fi
mkdir -p "$WORK/px"
cat > "$WORK/px/nginx.conf" <<NGX
master_process off; daemon off; worker_processes 1; pid $WORK/px/nginx.pid; error_log stderr error;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK/px; proxy_temp_path $WORK/px;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$PORT; keepalive_requests 1000000;
    location / { $NGX_BODY proxy_pass http://up; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_buffering off; } } }
NGX
wait_http $UP_PORT

count() {  # name n command...: "instructions units" of the command serving n requests
  #           (units = n), or with --sse, n seconds of streams (units = the events relayed)
  local name=$1 n=$2; shift 2
  local units=$n
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.$n.cg" "$@" >"$WORK/$name.$n.log" 2>&1 & local vp=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  # A failed run ends the script: inside $(...) set -e does not apply, and a missing count once
  # printed 0 (nginx answering some 220 KB requests with errors) and left valgrind running.
  if [ "$SSE" = 1 ]; then
    python3 Benchmarks/compare.d/stream_client.py --target "127.0.0.1:$PORT" --key x --conns 16 --events 16 \
      --duration "$n" >"$WORK/$name.$n.client"
    units=$(tail -1 "$WORK/$name.$n.client" | python3 -c 'import json, sys; r = json.loads(sys.stdin.read()); print(r["events"] if not r["errors"] else 0)')
    [ "$units" -gt 0 ] || { echo "$name: the stream client failed or saw errors" >&2; tail -c 300 "$WORK/$name.$n.client" >&2; kill -9 $vp; exit 1; }
  else
    h2load --h1 -n "$n" -c 8 -d "$WORK/body.json" -H 'Content-Type: application/json' \
      "http://127.0.0.1:$PORT/v1/chat/completions" >"$WORK/$name.$n.h2load"
    grep -q " $n succeeded" "$WORK/$name.$n.h2load" || { echo "$name: not all $n requests succeeded" >&2; grep "requests:" "$WORK/$name.$n.h2load" >&2; kill -9 $vp; exit 1; }
  fi
  kill -INT $vp; wait $vp || true
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$WORK/$name.$n.cg" "$KEEP/"; fi
  echo "$(callgrind_annotate "$WORK/$name.$n.cg" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}') $units"
}

per_request() {  # name command...
  local name=$1; shift
  local a b
  a=$(count "$name" "$N1" "$@") || exit 1
  b=$(count "$name" "$N2" "$@") || exit 1
  echo "$a $b" | awk '{ printf "%.0f", ($3 - $1) / ($4 - $2) }'
}

if [ "$SSE" = 1 ]; then
  echo "user-space instructions per relayed SSE event (valgrind Ir, ${N1} s and ${N2} s of 16 streams differenced)"
  s=$(per_request sluice "$SLUICE" serve --workers 1 --listen "127.0.0.1:$PORT" --endpoint "http://127.0.0.1:$UP_PORT")
  n=$(per_request nginx nginx -c "$WORK/px/nginx.conf" -p "$WORK/px")
  printf "%-8s %10s\n%-8s %10s\n" sluice "$s" nginx "$n"
  awk -v s="$s" -v n="$n" 'BEGIN { printf "ratio sluice/nginx = %.2f (user space only; Sluice reads every event for TTFT, token gaps and usage)\n", s / n }'
  exit 0
fi

echo "user-space instructions per proxied request (valgrind Ir, $N1 and $N2 requests differenced, 8 connections, $(wc -c < "$WORK/body.json")-byte body)"
s=$(per_request sluice "$SLUICE" serve --workers 1 --listen "127.0.0.1:$PORT" --endpoint "http://127.0.0.1:$UP_PORT")
printf "%-8s %10s\n" sluice "$s"
# nginx now and then answers a 220 KB request with an error (see count()): Sluice's count stands
# on its own, and the ratio is left out when nginx's run failed.
if n=$(per_request nginx nginx -c "$WORK/px/nginx.conf" -p "$WORK/px"); then
  printf "%-8s %10s\n" nginx "$n"
  awk -v s="$s" -v n="$n" 'BEGIN { printf "ratio sluice/nginx = %.2f (user space only; Sluice also parses the JSON body, hashes the prompt prefix and routes)\n", s / n }'
else
  echo "nginx    (its run failed; no ratio)"
fi
