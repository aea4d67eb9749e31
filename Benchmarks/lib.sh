# Shared by the Benchmarks/*.sh scripts: a scratch directory removed on exit together with every
# process started into PIDS, the CPU split (the measured proxy on CPU 0, load generators and
# upstreams on CPU 1), the fixed-response nginx upstreams (one answers at once, one reads the body
# first), a wrk chat POST script, waiting for ports, reading a process's CPU time, tool checks and
# the release build. Source it from the repository root: `. Benchmarks/lib.sh`.

bench_init() {  # name: the scratch directory is /tmp/sluice-NAME.XXXXXX
  WORK="$(mktemp -d "/tmp/sluice-$1.XXXXXX")"
  PIDS=()
  trap bench_cleanup EXIT
  NCPU=$(nproc)
  PROXY_CPU=0
  OTHER_CPU=$(( NCPU > 1 ? 1 : 0 ))
}

bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# A small chat completion, what every fixed upstream answers.
FIXED_BODY='{"id":"chatcmpl-1","object":"chat.completion","model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}'

start_fixed_upstream() {  # port: nginx answering FIXED_BODY to everything, on OTHER_CPU
  mkdir -p "$WORK/up"
  cat > "$WORK/up/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/up/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up;
  server { listen 127.0.0.1:$1 reuseport backlog=4096; keepalive_requests 1000000;
    location / { client_body_buffer_size 64k; default_type application/json; return 200 '$FIXED_BODY'; } } }
NGX
  taskset -c "$OTHER_CPU" nginx -c "$WORK/up/nginx.conf" -p "$WORK/up" & PIDS+=($!)
}

start_reading_upstream() {  # port: like start_fixed_upstream, but a body is read whole first
  # As a model server reads a prompt before it answers: an upstream that answered at once would
  # have proxies that stream bodies through (nginx) cut the connection under the rest of an
  # upload. The body is buffered by proxying to a second server block (port + 10) without it.
  mkdir -p "$WORK/up-read"
  cat > "$WORK/up-read/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $WORK/up-read/nginx.pid; error_log stderr error;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up-read; proxy_temp_path $WORK/up-read;
  upstream fixed { server 127.0.0.1:$(( $1 + 10 )); keepalive 256; }
  server { listen 127.0.0.1:$1 backlog=4096; keepalive_requests 1000000;
    client_max_body_size 16m; client_body_buffer_size 512k;
    location / { proxy_pass http://fixed; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_pass_request_body off; proxy_set_header Content-Length ""; } }
  server { listen 127.0.0.1:$(( $1 + 10 )); keepalive_requests 1000000;
    location / { default_type application/json; return 200 '$FIXED_BODY'; } } }
NGX
  taskset -c "$OTHER_CPU" nginx -c "$WORK/up-read/nginx.conf" -p "$WORK/up-read" & PIDS+=($!)
}

write_chat_lua() {  # file [line ...]: a wrk script POSTing a small chat request, plus the lines
  local file=$1; shift
  {
    echo 'wrk.method = "POST"'
    echo "wrk.body = '{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in one word.\"}],\"max_tokens\":8,\"temperature\":0}'"
    echo 'wrk.headers["Content-Type"] = "application/json"'
    for line in "$@"; do echo "$line"; done
  } > "$file"
}

wait_http() {  # port ...: until each answers HTTP (any status), at most 10 s each
  for port in "$@"; do
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # pid: utime + stime, in clock ticks
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f\n", s}'; }  # pid: CPU time of all its threads, ns

bench_need() {  # tool ...: stop with a hint unless every tool is installed
  local t
  for t in "$@"; do command -v "$t" >/dev/null || { echo "needs $t (bash .ci/setup)"; exit 1; }; done
}

bench_sluice() {  # builds the release binary and sets SLUICE to its path
  swift build -c release --product sluice >/dev/null
  SLUICE="$(swift build -c release --show-bin-path)/sluice"
}
