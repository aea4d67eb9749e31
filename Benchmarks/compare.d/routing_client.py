#!/usr/bin/env python3
"""Shared-prefix workload for the routing-quality section of Benchmarks/compare (stdlib only).

--users concurrent simulated users, each running multi-turn chats back to back for --duration
seconds: a chat belongs to one of --groups groups that share a long system prompt
(--system-tokens, ~4 bytes a token), and grows by one user message and the assistant's answer
per turn (--turns turns). Every request streams (stream_options.include_usage) with
max_tokens --output-tokens. Seeded, so every router sees the same sequence of chats.
Prints one JSON line: requests, errors, output tokens/s, TTFT p50/p90 in ms.
"""
import argparse
import asyncio
import json
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


async def request(reader, writer, hostport, path, key, body):
    """Sends one streaming POST on a keep-alive connection; returns (status, ttft_s, content, tokens)."""
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
        if len(targets) > 1:
            host, port = rng.choice(targets).split(":")
            if writer is not None:
                writer.close()
            reader = writer = None
        group = rng.randrange(args.groups)
        messages = [{"role": "system", "content": systems[group]},
                    {"role": "user", "content": text(rng, args.user_bytes)}]
        for _ in range(args.turns):
            if time.monotonic() >= deadline:
                break
            body = {"model": args.model, "messages": messages, "max_tokens": args.output_tokens,
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
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
    args = p.parse_args()
    srng = random.Random(args.seed)
    # Each group's prompt starts differently, so prefix hashes differ from the first block on.
    systems = ["You are assistant number %d of team %s. " % (g, srng.choice(WORDS)) + text(srng, args.system_tokens * 4)
               for g in range(args.groups)]
    stats = {"requests": 0, "errors": 0, "tokens": 0, "ttft": []}
    start = time.monotonic()
    deadline = start + args.duration
    await asyncio.gather(*(user(args, u, stats, deadline, systems) for u in range(args.users)))
    elapsed = max(args.duration, 1e-9)
    print(json.dumps({"requests": stats["requests"], "errors": stats["errors"], "output_tokens": stats["tokens"],
                      "tokens_per_s": stats["tokens"] / elapsed, "ttft_p50": pct(stats["ttft"], 50),
                      "ttft_p90": pct(stats["ttft"], 90), "seconds": time.monotonic() - start,
                      "first_error": stats.get("first_error")}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
