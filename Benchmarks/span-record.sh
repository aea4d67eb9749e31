#!/usr/bin/env bash
# What recording one request's spans costs a worker (server + admission + routing + one attempt),
# sampled and not, in ns per request; pinned to one CPU. Tracing-cost.sh runs it too.
#   Benchmarks/span-record.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/span-record"
mkdir -p .build-root && ln -sfn ../../.. .build-root/sluice
swift build -c release >/dev/null
exec taskset -c 0 "$(swift build -c release --show-bin-path)/SpanRecord" "${1:-200000}"
