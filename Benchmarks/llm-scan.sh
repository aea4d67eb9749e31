#!/usr/bin/env bash
# Request scanner + prefix hasher throughput on a 200 KB chat body, with memchr and memcpy over
# the same bytes as baselines in the same run (issue 3's target: ≥ 1 GB/s). Pinned to one CPU.
#   Benchmarks/llm-scan.sh
set -euo pipefail
cd "$(dirname "$0")/llm-scan"
mkdir -p .build-root && ln -sfn ../../.. .build-root/sluice
swift build -c release >/dev/null
exec taskset -c 0 "$(swift build -c release --show-bin-path)/LLMScan"
