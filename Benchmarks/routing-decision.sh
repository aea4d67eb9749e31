#!/usr/bin/env bash
# One routing decision at 256 endpoints: latency p50/p99/p99.9 and heap allocations per
# decision, default profile and least-loaded against round robin in the same run (issue 4's
# target: p99 ≤ 5 µs, no allocation). Pinned to one CPU.
#   Benchmarks/routing-decision.sh [endpoints] [decisions]
set -euo pipefail
cd "$(dirname "$0")/routing-decision"
mkdir -p .build-root && ln -sfn ../../.. .build-root/sluice
swift build -c release >/dev/null
exec taskset -c 0 "$(swift build -c release --show-bin-path)/RoutingDecision" "${1:-256}" "${2:-200000}"
