"""Reading the simulated (or real) vLLM servers' prefix-cache counters, for the routing benchmarks
(compare.py's section 4 and Benchmarks/routing-quality.py). Stdlib only."""


def prefix_cache_totals(metrics_text):
    """(hits, queries) summed from one /metrics page: vllm:prefix_cache_hits_total and
    vllm:prefix_cache_queries_total over all their series."""
    hits = queries = 0.0
    for line in metrics_text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == "vllm:prefix_cache_hits_total":
            hits += float(line.rsplit(" ", 1)[1])
        elif name == "vllm:prefix_cache_queries_total":
            queries += float(line.rsplit(" ", 1)[1])
    return hits, queries
