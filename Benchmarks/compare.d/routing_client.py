#!/usr/bin/env python3
"""Shared-prefix workload for the routing-quality section of Benchmarks/compare (stdlib only).

--users concurrent simulated users, each running multi-turn chats back to back for --duration
seconds: a chat belongs to one of --groups groups that share a long system prompt
(--system-tokens, ~4 bytes a token), and grows by one user message and the assistant's answer
per turn (--turns turns). Every request streams (stream_options.include_usage) with
max_tokens --output-tokens. Seeded, so every router sees the same sequence of chats.
Prints one JSON line: requests, errors, output tokens/s, TTFT p50/p90 in ms.

Open loop (--rate R --chats N, instead of --users/--duration): N chats arrive as a Poisson process
of R chats a second (arrival times and chat contents seeded, so every router gets the same
arrivals and the same chats, whatever its speed); each chat runs its --turns turns one after the
other on its own connection, as a user would. After the last arrival the client waits for every
started chat, each request bounded by --timeout and the whole wait by --drain seconds; what is
still in flight then is cancelled and counted as unfinished. TTFT percentiles are over every
request sent: one that never got a first token (error, timeout, unfinished) counts as infinitely
late, and a percentile that lands on one prints as null (ttft_answered_p50/p90 are over the
answered ones only). Output tokens/s = output tokens of completed requests / (last completion -
first arrival). Extra fields: rate, chats, sent, unfinished, unsent (turns never sent because
their chat failed or was cancelled), timeouts, unanswered, duration, arrival lag (how late the
client started chats: if it is large the client, not the servers, was the bottleneck).
"""
import argparse
import asyncio
import json
import math
import random
import time

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu model token cache prefix route").split()


def text(rng, nbytes):
    out, n = [], 0
    while n < nbytes:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


async def request(reader, writer, hostport, path, key, body, on_first=None):
    """Sends one streaming POST on a keep-alive connection; returns (status, ttft_s, content, tokens).
    on_first(ttft_s), if given, is called when the first content arrives (open loop: a request
    that fails later still has a TTFT)."""
    data = json.dumps(body).encode()
    auth = b"authorization: Bearer %s\r\n" % key.encode() if key else b""
    start = time.monotonic()
    writer.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n"
                 % (path.encode(), hostport.encode(), auth, len(data)) + data)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    chunked = b"transfer-encoding: chunked" in lower
    body_parts = []
    ttft = None
    content = []
    tokens = None
    pending = b""

    def feed(chunk):
        nonlocal pending, ttft, tokens
        pending += chunk
        while True:
            i = pending.find(b"\n\n")
            if i < 0:
                return
            event, pending = pending[:i], pending[i + 2:]
            for line in event.split(b"\n"):
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    continue
                try:
                    obj = json.loads(payload)
                except ValueError:
                    continue
                for ch in obj.get("choices") or []:
                    piece = (ch.get("delta") or {}).get("content")
                    if piece:
                        if ttft is None:
                            ttft = time.monotonic() - start
                            if on_first is not None:
                                on_first(ttft)
                        content.append(piece)
                usage = obj.get("usage")
                if usage and usage.get("completion_tokens") is not None:
                    tokens = usage["completion_tokens"]

    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunk = await reader.readexactly(size + 2)
            feed(chunk[:-2])
    else:
        n = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        body_parts.append(await reader.readexactly(n))
        feed(body_parts[0] + b"\n\n")
    if status != 200:
        raw = body_parts[0] if body_parts else b""
        return status, None, raw.decode(errors="replace")[:200], 0
    if tokens is None:
        tokens = len(content)
    return status, ttft, "".join(content), tokens


async def user(args, uid, stats, deadline, systems):
    rng = random.Random(args.seed * 1000 + uid)
    # --target may list several gateways (replicas): each chat goes to one picked at random.
    targets = args.target.split(",")
    host, port = targets[0].split(":")
    reader = writer = None
    while time.monotonic() < deadline:
        group = rng.randrange(args.groups)
        if len(targets) > 1:
            # --pin: the static-affinity oracle, each group on one target (group mod targets).
            pick = targets[group % len(targets)] if args.pin else rng.choice(targets)
            host, port = pick.split(":")
            if writer is not None:
                writer.close()
            reader = writer = None
        messages = [{"role": "system", "content": systems[group]},
                    {"role": "user", "content": text(rng, args.user_bytes)}]
        for turn in range(args.turns):
            if time.monotonic() >= deadline:
                break
            body = {"model": args.model, "messages": messages, "max_tokens": args.output_tokens,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
            # The oracle: one cache that keeps every earlier prompt and answer (perfect routing,
            # no eviction). A first turn finds its group's system prompt if any chat of the group
            # came before; a later turn finds the whole conversation but its new user message.
            total = sum(len(m["content"]) for m in messages)
            if turn == 0:
                cached = len(messages[0]["content"]) if group in stats["seen_groups"] else 0
                stats["seen_groups"].add(group)
            else:
                cached = total - len(messages[-1]["content"])
            stats["oracle_cached"] += cached
            stats["oracle_total"] += total
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
                status, ttft, answer, tokens = await asyncio.wait_for(
                    request(reader, writer, f"{host}:{port}", args.path, args.key, body), args.timeout)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError):
                stats["errors"] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.05)
                break
            if status != 200:
                stats["errors"] += 1
                stats.setdefault("first_error", f"HTTP {status}: {answer}")
                break
            if time.monotonic() <= deadline:
                stats["requests"] += 1
                stats["tokens"] += tokens
                if ttft is not None:
                    stats["ttft"].append(ttft)
            messages = messages + [{"role": "assistant", "content": answer},
                                   {"role": "user", "content": text(rng, args.user_bytes)}]
    if writer is not None:
        writer.close()


async def open_chat(args, idx, at, t0, systems, stats, recs):
    """Open loop: chat `idx` arrives at t0 + `at` and runs its turns one after the other."""
    rng = random.Random(args.seed * 1_000_003 + idx)
    targets = args.target.split(",")
    host, port = (rng.choice(targets) if len(targets) > 1 else targets[0]).split(":")
    group = rng.randrange(args.groups)
    first_user = text(rng, args.user_bytes)
    delay = t0 + at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    stats["lag"].append(max(0.0, time.monotonic() - (t0 + at)))
    messages = [{"role": "system", "content": systems[group]}, {"role": "user", "content": first_user}]
    reader = writer = None
    sent = 0
    try:
        for _ in range(args.turns):
            body = {"model": args.model, "messages": messages, "max_tokens": args.output_tokens,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
            rec = {"ttft": None, "state": "in flight"}
            recs.append(rec)
            sent += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
                status, _, answer, tokens = await asyncio.wait_for(
                    request(reader, writer, f"{host}:{port}", args.path, args.key, body,
                            on_first=lambda t, rec=rec: rec.__setitem__("ttft", t)), args.timeout)
            except asyncio.TimeoutError:
                rec["state"] = "error"
                stats["errors"] += 1
                stats["timeouts"] += 1
                stats.setdefault("first_error", f"timeout after {args.timeout:g} s")
                return
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
                rec["state"] = "error"
                stats["errors"] += 1
                stats.setdefault("first_error", f"{type(e).__name__}: {e}")
                return
            if status != 200:
                rec["state"] = "error"
                stats["errors"] += 1
                stats.setdefault("first_error", f"HTTP {status}: {answer}")
                return
            rec["state"] = "done"
            stats["requests"] += 1
            stats["tokens"] += tokens
            stats["last_completion"] = max(stats["last_completion"], time.monotonic())
            messages = messages + [{"role": "assistant", "content": answer},
                                   {"role": "user", "content": text(rng, args.user_bytes)}]
    finally:
        stats["unsent"] += args.turns - sent
        if writer is not None:
            writer.close()


async def open_loop(args, systems):
    arng = random.Random(args.seed)
    offsets, t = [], 0.0
    for _ in range(args.chats):
        offsets.append(t)
        t += arng.expovariate(args.rate)
    stats = {"requests": 0, "errors": 0, "timeouts": 0, "tokens": 0, "unsent": 0, "lag": [], "last_completion": 0.0}
    recs = []
    t0 = time.monotonic() + 0.2  # let every task reach its sleep first
    tasks = [asyncio.create_task(open_chat(args, i, at, t0, systems, stats, recs)) for i, at in enumerate(offsets)]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, t0 + offsets[-1] + args.drain - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()
    unfinished = sum(1 for r in recs if r["state"] == "in flight")
    ttfts = [r["ttft"] if r["ttft"] is not None else math.inf for r in recs]
    answered = [v for v in ttfts if v != math.inf]
    duration = max(stats["last_completion"] - t0, 1e-9) if stats["requests"] else None
    finite = lambda v: None if v is None or v == math.inf else v
    lag = stats["lag"]
    return {"requests": stats["requests"], "errors": stats["errors"], "output_tokens": stats["tokens"],
            "tokens_per_s": stats["tokens"] / duration if duration else 0.0,
            "ttft_p50": finite(pct(ttfts, 50)), "ttft_p90": finite(pct(ttfts, 90)),
            "seconds": time.monotonic() - t0, "first_error": stats.get("first_error"),
            "rate": args.rate, "chats": args.chats, "arrival_span": offsets[-1], "duration": duration,
            "sent": len(recs), "unfinished": unfinished, "unsent": stats["unsent"], "timeouts": stats["timeouts"],
            "unanswered": len(ttfts) - len(answered),
            "ttft_answered_p50": pct(answered, 50), "ttft_answered_p90": pct(answered, 90),
            "arrival_lag_p99_ms": pct(lag, 99), "arrival_lag_max_ms": max(lag) * 1000 if lag else None}


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))] * 1000


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--key", default="")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--system-tokens", type=int, default=3000)
    p.add_argument("--user-bytes", type=int, default=200)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--output-tokens", type=int, default=24)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pin", action="store_true",
                   help="closed loop: send each chat to target number (group mod targets) instead of one at random")
    p.add_argument("--rate", type=float, help="open loop: chats started per second (Poisson); needs --chats")
    p.add_argument("--chats", type=int, help="open loop: chats in total")
    p.add_argument("--drain", type=float, default=120, help="open loop: seconds to wait after the last arrival")
    args = p.parse_args()
    if (args.rate is None) != (args.chats is None) or (args.rate is not None and (args.rate <= 0 or args.chats < 1)):
        p.error("open loop needs both --rate > 0 and --chats >= 1")
    srng = random.Random(args.seed)
    # Each group's prompt starts differently, so prefix hashes differ from the first block on.
    systems = ["You are assistant number %d of team %s. " % (g, srng.choice(WORDS)) + text(srng, args.system_tokens * 4)
               for g in range(args.groups)]
    if args.rate is not None:
        print(json.dumps(await open_loop(args, systems)), flush=True)
        return
    stats = {"requests": 0, "errors": 0, "tokens": 0, "ttft": [], "seen_groups": set(), "oracle_cached": 0,
             "oracle_total": 0}
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(*(user(args, u, stats, deadline, systems) for u in range(args.users)))
    elapsed = max(args.duration, 1e-9)
    print(json.dumps({"requests": stats["requests"], "errors": stats["errors"], "output_tokens": stats["tokens"],
                      "tokens_per_s": stats["tokens"] / elapsed, "ttft_p50": pct(stats["ttft"], 50),
                      "ttft_p90": pct(stats["ttft"], 90), "seconds": time.monotonic() - start,
                      "first_error": stats.get("first_error"),
                      # Characters stand in for tokens (the sim counts ~4 per token, in 16-token
                      # blocks, so this bound is a little above what whole blocks allow).
                      "oracle_hit_rate": stats["oracle_cached"] / max(stats["oracle_total"], 1)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
