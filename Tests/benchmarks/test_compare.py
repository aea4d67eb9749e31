"""Unit tests of Benchmarks/compare's repetition logic: which proxies are measured again, in what
order, and how their runs become one table cell. (The measurements themselves are the benchmark;
these check that its verdict is computed as the results file says.)"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Benchmarks", "compare.d"))
import compare  # noqa: E402


@pytest.fixture(autouse=True)
def quiet(monkeypatch):
    monkeypatch.setattr(compare, "log", lambda msg: None)


def test_median_of_odd_and_even_counts():
    assert compare.median([3]) == 3
    assert compare.median([5, 1, 3]) == 3
    assert compare.median([4, 1, 3, 2]) == 2.5
    assert compare.median([10, 1, 1, 1, 10]) == 1


def test_combine_takes_medians_sums_counts_and_keeps_the_cpu_range():
    runs = [
        {"rps": 100.0, "p50": 1.0, "cpu_us": 20.0, "non2xx": 0, "errors": 1, "requests": 1000},
        {"rps": 300.0, "p50": 3.0, "cpu_us": 10.0, "non2xx": 2, "errors": 0, "requests": 3000},
        {"rps": 200.0, "p50": 9.0, "cpu_us": 12.0, "non2xx": 0, "errors": 0, "requests": 2000},
    ]
    r = compare.combine(runs)
    assert r["rps"] == 200.0
    assert r["p50"] == 3.0
    assert r["cpu_us"] == 12.0
    assert (r["cpu_min"], r["cpu_max"]) == (10.0, 20.0)
    assert (r["non2xx"], r["errors"], r["requests"]) == (2, 1, 6000)
    assert (r["runs"], r["failed_runs"]) == (3, 0)


def test_combine_leaves_failed_runs_out_of_the_medians_and_counts_them():
    runs = [{"error": "connection refused"}, {"rps": 10.0, "cpu_us": 5.0}, {"rps": 30.0, "cpu_us": 7.0}]
    r = compare.combine(runs)
    assert r["rps"] == 20.0
    assert r["cpu_us"] == 6.0
    assert (r["runs"], r["failed_runs"]) == (3, 1)
    assert compare.errors_cell(r, 0) == "1 of 3 runs failed"
    assert compare.errors_cell(r, 4) == "4; 1 of 3 runs failed"


def test_combine_keeps_the_first_failure_when_every_run_failed():
    runs = [{"error": "first"}, {"error": "second"}]
    assert compare.combine(runs) == {"error": "first"}


def test_combine_with_a_value_missing_in_one_run_keeps_the_first_runs_value():
    # A streaming run that received no events has p50 None; a median over the others would mix
    # runs, so the first run's value stands (the table shows it as measured).
    runs = [{"p50": 1.5, "sps": 10.0}, {"p50": None, "sps": 20.0}, {"p50": 0.5, "sps": 30.0}]
    r = compare.combine(runs)
    assert r["p50"] == 1.5
    assert r["sps"] == 20.0
    assert "cpu_min" not in r


def test_cpu_cell_shows_the_range_only_for_repeated_runs():
    assert compare.cpu_cell({"cpu_us": 12.34}, 1) == "12.3"
    assert compare.cpu_cell({"cpu_us": 12.34, "cpu_min": 11.0, "cpu_max": 15.5, "runs": 5}, 1) == "12.3 (11.0–15.5)"
    assert compare.cpu_cell({"cpu_us": 12.34, "cpu_min": 12.34, "cpu_max": 12.34, "runs": 1}, 1) == "12.3"
    assert compare.cpu_cell({}, 1) == "-"


class Fake:
    """A run function whose CPU per request is fixed per peer, recording the order of the calls."""

    def __init__(self, cpu, failing=()):
        self.cpu, self.failing, self.calls = cpu, set(failing), []

    def __call__(self, name):
        self.calls.append(name)
        if name in self.failing:
            return {"error": "refused"}
        n = self.calls.count(name)
        r = {"rps": 1000.0 + n, "p50": 1.0}
        if name != "direct":
            r["cpu_us"] = self.cpu[name] + n  # changes per run so the range is not trivial
        return r


def run_point(monkeypatch, reps, cpu, started, failing=()):
    monkeypatch.setattr(compare, "P", {"reps": reps}, raising=False)  # set by main() in a real run
    fake = Fake(cpu, failing)
    peers = list(started)
    return compare.measure_point("t", peers, started, fake), fake.calls


def test_contenders_and_direct_run_reps_times_the_others_once(monkeypatch):
    cpu = {"a": 10.0, "b": 14.0, "c": 15.0, "d": 20.0, "e": 80.0}
    started = {n: (object(), None) for n in cpu}
    results, calls = run_point(monkeypatch, 5, cpu, started)
    # First round: everyone once, direct first, in the given order.
    assert calls[:6] == ["direct", "a", "b", "c", "d", "e"]
    # Within 1.5x of the best first run (a at 11 us): b (15) and c (16); not d (21 > 16.5), nor
    # within 1.5x of a's median after its runs (13: 21 > 19.5).
    counts = {n: calls.count(n) for n in ["direct"] + list(cpu)}
    assert counts == {"direct": 5, "a": 5, "b": 5, "c": 5, "d": 1, "e": 1}
    assert [results[n]["runs"] for n in ("direct", "a", "d")] == [5, 5, 1]
    # The medians and range come from the runs: a's CPU was 11, 12, 13, 14, 15.
    assert results["a"]["cpu_us"] == 13.0
    assert (results["a"]["cpu_min"], results["a"]["cpu_max"]) == (11.0, 15.0)


def test_later_rounds_rotate_the_order(monkeypatch):
    cpu = {"a": 10.0, "b": 10.0, "c": 10.0}
    started = {n: (object(), None) for n in cpu}
    _, calls = run_point(monkeypatch, 5, cpu, started)
    rounds = [calls[i:i + 4] for i in range(4, len(calls), 4)]
    assert len(rounds) == 4
    assert [r[0] for r in rounds] == ["a", "b", "c", "direct"]
    for r in rounds:
        assert sorted(r) == ["a", "b", "c", "direct"]


def test_peers_not_running_or_failing_are_reported_and_not_repeated(monkeypatch):
    cpu = {"a": 10.0, "b": 10.0, "c": 10.0}
    started = {"a": (object(), None), "b": (None, "not installed"), "c": (object(), None)}
    results, calls = run_point(monkeypatch, 3, cpu, started, failing={"c"})
    assert results["b"] == {"why": "not installed"}
    assert "b" not in calls
    assert calls.count("c") == 1 and results["c"] == {"error": "refused"}
    assert calls.count("a") == 3 and calls.count("direct") == 3


def test_one_rep_runs_everyone_once(monkeypatch):
    cpu = {"a": 10.0, "b": 11.0}
    started = {n: (object(), None) for n in cpu}
    results, calls = run_point(monkeypatch, 1, cpu, started)
    assert calls == ["direct", "a", "b"]
    assert compare.cpu_cell(results["a"], 1) == "11.0"


class Sequence(Fake):
    """CPU per request given per peer as a list, one value per run (the last repeats)."""

    def __call__(self, name):
        self.calls.append(name)
        if name == "direct":
            return {"rps": 1.0, "p50": 1.0}
        values = self.cpu[name]
        return {"rps": 1.0, "p50": 1.0, "cpu_us": values[min(self.calls.count(name), len(values)) - 1]}


def test_a_peer_within_reach_of_the_best_median_is_repeated_too(monkeypatch):
    # a's first run is lucky (10); its median is 20. b's one run (16) was not within 1.5x of 10,
    # but is within reach of a's median: b is measured again, after a's rounds.
    monkeypatch.setattr(compare, "P", {"reps": 3}, raising=False)
    fake = Sequence({"a": [10.0, 20.0, 20.0], "b": [16.0, 17.0, 18.0], "c": [90.0]})
    started = {n: (object(), None) for n in ("a", "b", "c")}
    results = compare.measure_point("t", list(started), started, fake)
    assert fake.calls[:4] == ["direct", "a", "b", "c"]
    assert fake.calls[4:8] == ["a", "direct", "direct", "a"]  # a's rounds, rotated
    assert fake.calls[8:] == ["b", "b"]                       # then b's
    assert [results[n]["runs"] for n in ("direct", "a", "b", "c")] == [3, 3, 3, 1]
    assert results["b"]["cpu_us"] == 17.0 and results["a"]["cpu_us"] == 20.0
