#!/usr/bin/env python3
"""The workload shapes of Benchmarks/routing-suite (stdlib only; one JSON line out).

Every request is a streamed chat completion (stream_options.include_usage) with temperature 0;
prompts are words at ~4 bytes a token, seeded, so every router sees the same chats.

  --shape steady   closed loop: --users clients run chats back to back for --duration s; a chat
                   belongs to one of --groups groups sharing a --system-tokens system prompt and
                   grows by its answer and a new user message each of its --turns turns
                   (Benchmarks/routing-quality.py's workload).
  --shape burst    closed loop, fixed work: --groups × --chats-per-group chats of --turns turns;
                   --users clients start at once, client u running the chats of group u mod
                   groups one after the other (a group's chats shared among its clients), so
                   every group starts at once and its clients stay with it (with fewer users
                   than groups, client u runs groups u, u + users, ...); the run ends when
                   every chat is done (tokens/s = output / makespan).
  --shape poisson  open loop: --chats steady-shape chats arrive as a seeded Poisson process of
                   --rate chats/s, each running its turns one after the other; TTFT over every
                   request sent (unanswered = infinitely late).
  --shape mixed    closed loop: each chat is either short (a unique --short-tokens prompt, 1-2
                   turns, no shared prefix) or RAG (one of --docs documents of --doc-tokens,
                   shared, + a question; 1 turn), --rag-share of them RAG.
  --shape lora     like steady, each group's chats naming adapter groups mod len(--adapters).

Output: requests, errors, output_tokens, tokens_per_s, ttft_p50/p90 (ms), duration, first_error,
and `ttfts`: per request [send wall time, TTFT ms] for matching with an access log.
"""
import argparse
import asyncio
import json
import math
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "compare.d"))
from routing_client import WORDS, pct, request, text  # noqa: E402


class Run:
    def __init__(self, args):
        self.args = args
        self.targets = args.target.split(",")
        self.stats = {"requests": 0, "errors": 0, "tokens": 0, "ttft": [], "sent": 0}
        self.records = []

    async def chat(self, rng, first_messages, turns, model, deadline=None):
        """Runs one chat on its own connection; returns False when it failed."""
        a = self.args
        host, port = (rng.choice(self.targets) if len(self.targets) > 1 else self.targets[0]).split(":")
        messages = list(first_messages)
        reader = writer = None
        try:
            for _ in range(turns):
                if deadline is not None and time.monotonic() >= deadline:
                    return True
                body = {"model": model, "messages": messages, "max_tokens": a.output_tokens, "stream": True,
                        "stream_options": {"include_usage": True}, "temperature": 0}
                rec = {"ttft": None, "wall": time.time()}
                self.records.append(rec)
                self.stats["sent"] += 1
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 22)
                    status, ttft, answer, tokens = await asyncio.wait_for(
                        request(reader, writer, f"{host}:{port}", "/v1/chat/completions", a.key, body,
                                on_first=lambda t, rec=rec: rec.__setitem__("ttft", t)), a.timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as e:
                    self.stats["errors"] += 1
                    self.stats.setdefault("first_error", f"{type(e).__name__}: {e}")
                    return False
                if status != 200:
                    self.stats["errors"] += 1
                    self.stats.setdefault("first_error", f"HTTP {status}: {answer}")
                    return False
                if deadline is not None and time.monotonic() > deadline:
                    return True
                self.stats["requests"] += 1
                self.stats["tokens"] += tokens
                self.stats["last"] = time.monotonic()
                messages = messages + [{"role": "assistant", "content": answer},
                                       {"role": "user", "content": text(rng, a.user_bytes)}]
            return True
        finally:
            if writer is not None:
                writer.close()


def systems(args, n, tokens, tag="team"):
    srng = random.Random(args.seed)
    return ["You are assistant number %d of %s %s. " % (g, tag, srng.choice(WORDS)) + text(srng, tokens * 4) for g in range(n)]


def chat_spec(args, rng, sys_prompts, docs, i):
    """(first messages, turns, model) of chat i for the shape."""
    a = args
    if a.shape == "mixed":
        if rng.random() < a.rag_share:
            d = rng.randrange(len(docs))
            q = "Question %d about the document above: %s" % (i, text(rng, a.user_bytes))
            return [{"role": "system", "content": "Answer from this document.\n" + docs[d]}, {"role": "user", "content": q}], 1, a.model
        prompt = "Chat %d. %s" % (i, text(rng, a.short_tokens * 4))
        return [{"role": "user", "content": prompt}], rng.choice([1, 2]), a.model
    group = i // a.chats_per_group % a.groups if a.shape == "burst" else rng.randrange(a.groups)
    model = a.model
    if a.adapters:
        adapters = a.adapters.split(",")
        model = adapters[group % len(adapters)]
    return [{"role": "system", "content": sys_prompts[group]},
            {"role": "user", "content": text(rng, a.user_bytes)}], a.turns, model


async def closed(run, args, sys_prompts, docs):
    start = time.monotonic()
    deadline = start + args.duration

    async def user(u):
        rng = random.Random(args.seed * 1000 + u)
        i = 0
        while time.monotonic() < deadline:
            first, turns, model = chat_spec(args, rng, sys_prompts, docs, u * 100_000 + i)
            i += 1
            if not await run.chat(rng, first, turns, model, deadline):
                await asyncio.sleep(0.05)
    await asyncio.gather(*(user(u) for u in range(args.users)))
    return args.duration


async def burst(run, args, sys_prompts, docs):
    # One queue of chat numbers per group; chat i belongs to group i // chats_per_group.
    queues = [list(range(g * args.chats_per_group, (g + 1) * args.chats_per_group)) for g in range(args.groups)]
    start = time.monotonic()

    async def user(u):
        # users >= groups: client u shares group u mod groups' chats with the others on it;
        # fewer users than groups: client u runs groups u, u + users, ... one after the other.
        mine = [u % args.groups] if args.users >= args.groups else list(range(u, args.groups, args.users))
        for g in mine:
            q = queues[g]
            while q:
                i = q.pop(0)
                rng = random.Random(args.seed * 7919 + i)
                first, turns, model = chat_spec(args, rng, sys_prompts, docs, i)
                await run.chat(rng, first, turns, model)
    await asyncio.gather(*(user(u) for u in range(args.users)))
    return max(run.stats.get("last", start) - start, 1e-9)


async def poisson(run, args, sys_prompts, docs):
    arng = random.Random(args.seed)
    offsets, t = [], 0.0
    for _ in range(args.chats):
        offsets.append(t)
        t += arng.expovariate(args.rate)
    t0 = time.monotonic() + 0.2

    async def one(i, at):
        rng = random.Random(args.seed * 1_000_003 + i)
        first, turns, model = chat_spec(args, rng, sys_prompts, docs, i)
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await run.chat(rng, first, turns, model)
    tasks = [asyncio.create_task(one(i, at)) for i, at in enumerate(offsets)]
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, t0 + offsets[-1] + args.drain - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    return max(run.stats.get("last", t0) - t0, 1e-9)


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--shape", choices=["steady", "burst", "poisson", "mixed", "lora"], required=True)
    p.add_argument("--model", default="tiny-llama")
    p.add_argument("--key", default="")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--chats-per-group", type=int, default=8)
    p.add_argument("--system-tokens", type=int, default=3000)
    p.add_argument("--user-bytes", type=int, default=200)
    p.add_argument("--turns", type=int, default=4)
    p.add_argument("--output-tokens", type=int, default=24)
    p.add_argument("--rate", type=float, default=10)
    p.add_argument("--chats", type=int, default=100)
    p.add_argument("--drain", type=float, default=60)
    p.add_argument("--docs", type=int, default=8)
    p.add_argument("--doc-tokens", type=int, default=3000)
    p.add_argument("--short-tokens", type=int, default=150)
    p.add_argument("--rag-share", type=float, default=0.5)
    p.add_argument("--adapters", default="")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    sys_prompts = systems(args, args.groups, args.system_tokens)
    docs = systems(args, args.docs, args.doc_tokens, tag="document") if args.shape == "mixed" else []
    run = Run(args)
    fn = {"steady": closed, "lora": closed, "mixed": closed, "burst": burst, "poisson": poisson}[args.shape]
    seconds = await fn(run, args, sys_prompts, docs)
    s = run.stats
    ttfts = [r["ttft"] for r in run.records]
    # Open loop: every request sent counts, a never-answered one as infinitely late.
    if args.shape == "poisson":
        all_ttft = [v if v is not None else math.inf for v in ttfts]
    else:
        all_ttft = [v for v in ttfts if v is not None]
    finite = lambda v: None if v is None or v == math.inf else v
    print(json.dumps({"requests": s["requests"], "errors": s["errors"], "sent": s["sent"], "output_tokens": s["tokens"],
                      "tokens_per_s": s["tokens"] / seconds, "duration": seconds,
                      "ttft_p50": finite(pct(all_ttft, 50)), "ttft_p90": finite(pct(all_ttft, 90)),
                      "first_error": s.get("first_error"),
                      "ttfts": [[r["wall"], None if r["ttft"] is None else r["ttft"] * 1000] for r in run.records]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
