#!/usr/bin/env python3
"""Streaming share of Benchmarks/soak.sh (stdlib asyncio only): --conns keep-alive connections
send streaming chat POSTs back to back until --count streams have completed in total. A stream
counts as complete when it is a 200 with a chunked body that ends in `data: [DONE]` and the last
chunk; anything else is an error (the connection is then replaced). Prints one JSON line."""
import argparse
import asyncio
import json
import time


async def worker(args, state, body):
    req = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    r = w = None
    while state["started"] < args.count:
        state["started"] += 1
        try:
            if w is None:
                r, w = await asyncio.open_connection(args.host, args.port)
            w.write(req)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
            if not head.startswith(b"HTTP/1.1 200") or b"transfer-encoding: chunked" not in head.lower():
                raise RuntimeError(head[:60])
            buf = bytearray()
            while not buf.endswith(b"\r\n0\r\n\r\n"):
                d = await asyncio.wait_for(r.read(65536), 30)
                if not d:
                    raise RuntimeError("closed mid-stream")
                buf += d
            if b"data: [DONE]" not in buf:
                raise RuntimeError("no [DONE]")
            state["done"] += 1
            state["events"] += buf.count(b"data: ")
        except Exception as e:  # noqa: BLE001 - counted, connection replaced
            state["errors"] += 1
            state["last_error"] = repr(e)[:200]
            if w is not None:
                w.close()
            r = w = None
    if w is not None:
        w.close()


async def main(args):
    body = json.dumps({"model": args.model, "stream": True, "max_tokens": args.events,
                       "messages": [{"role": "user", "content": "Count to eight."}]}).encode()
    state = {"started": 0, "done": 0, "errors": 0, "events": 0, "last_error": None}
    t0 = time.monotonic()
    await asyncio.gather(*(worker(args, state, body) for _ in range(args.conns)))
    dt = time.monotonic() - t0
    print(json.dumps({"streams": state["done"], "errors": state["errors"], "events": state["events"],
                      "seconds": round(dt, 2), "streams_per_s": round(state["done"] / dt, 1),
                      "last_error": state["last_error"]}), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--conns", type=int, default=32)
    p.add_argument("--events", type=int, default=8, help="max_tokens: content events per stream")
    p.add_argument("--model", default="tiny-stream")
    asyncio.run(main(p.parse_args()))
