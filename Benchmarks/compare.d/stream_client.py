#!/usr/bin/env python3
"""SSE load client for Benchmarks/compare (stdlib asyncio only).

latency mode: --conns C keep-alive connections, each sending streaming chat POSTs back to back
  for --duration seconds. Every event carries the upstream's CLOCK_MONOTONIC send time ("t", see
  sse_upstream.py); the per-event latency is arrival - t. Prints one JSON line: streams, events,
  errors, per-event latency p50/p99/p99.9 in ms.
hold mode: opens --conns streams (max_tokens 100000 = the upstream keeps them open), waits for the
  first event on each, prints {"established": n, ...} and holds them until stdin closes or
  --duration passes.
"""
import argparse
import asyncio
import json
import re
import socket
import sys
import time

T_RE = re.compile(rb'"content":\s*"@(\d+)')


class Stream(asyncio.Protocol):
    """One keep-alive connection; decodes chunked or content-length responses incrementally."""

    def __init__(self, client):
        self.c = client
        self.transport = None
        self.closed = asyncio.get_running_loop().create_future()
        self.counted = False  # hold mode: this connection's stream has delivered its first event
        self.reset()

    def reset(self):
        self.buf = bytearray()
        self.state = "head"  # head, chunksize, chunkdata, length, done
        self.remaining = 0
        self.text = bytearray()  # decoded body not yet scanned for whole events
        self.status = 0
        self.first = True

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def connection_lost(self, exc):
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self):
        self.reset()
        self.transport.write(self.c.request)

    def data_received(self, data):
        now = time.monotonic_ns()
        self.buf += data
        while True:
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                del self.buf[:end + 4]
                try:
                    self.status = int(head.split(b" ", 2)[1])
                except (IndexError, ValueError):
                    self.status = 0
                if b"transfer-encoding: chunked" in head:
                    self.state = "chunksize"
                else:
                    m = re.search(rb"content-length:\s*(\d+)", head)
                    self.remaining = int(m.group(1)) if m else 1 << 62
                    self.state = "length"
            elif self.state == "chunksize":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    return
                size = int(bytes(self.buf[:end]).split(b";")[0], 16)
                del self.buf[:end + 2]
                if size == 0:
                    # trailers (none expected) end with an empty line
                    if len(self.buf) < 2:
                        self.buf[:0] = b"0\r\n"
                        return
                    del self.buf[:2]
                    self.finish()
                    return
                self.remaining = size
                self.state = "chunkdata"
            elif self.state == "chunkdata":
                take = min(self.remaining, len(self.buf))
                self.text += self.buf[:take]
                del self.buf[:take]
                self.remaining -= take
                self.scan(now)
                if self.remaining:
                    return
                if len(self.buf) < 2:
                    self.state = "chunkcrlf"
                    return
                del self.buf[:2]
                self.state = "chunksize"
            elif self.state == "chunkcrlf":
                if len(self.buf) < 2:
                    return
                del self.buf[:2]
                self.state = "chunksize"
            elif self.state == "length":
                take = min(self.remaining, len(self.buf))
                self.text += self.buf[:take]
                del self.buf[:take]
                self.remaining -= take
                self.scan(now)
                if self.remaining:
                    return
                self.finish()
                return

    def scan(self, now):
        # Only whole events: an event ends with a blank line.
        end = self.text.rfind(b"\n\n")
        if end < 0:
            return
        block = bytes(self.text[:end])
        del self.text[:end + 2]
        for m in T_RE.finditer(block):
            self.c.on_event(self, now - int(m.group(1)))

    def finish(self):
        self.c.on_done(self)
        self.state = "done"
        if self.c.args.mode == "hold":
            # A held stream must stay open; one that ends (proxy timeout, error) is not re-sent.
            self.c.ended += 1
            if self.transport is not None:
                self.transport.close()
            return
        if self.c.running and self.transport is not None:
            self.send()
        elif self.transport is not None:
            self.transport.close()


class Client:
    def __init__(self, args):
        self.args = args
        self.running = True
        self.lat = []
        self.streams = 0
        self.errors = 0
        self.established = 0
        self.ended = 0
        body = json.dumps({"model": args.model, "messages": [{"role": "user", "content": "Say hello."}],
                           "max_tokens": 100000 if args.mode == "hold" else args.events, "stream": True}).encode()
        host, port = args.target.split(":")
        self.host, self.port = host, int(port)
        auth = b"authorization: Bearer %s\r\n" % args.key.encode() if args.key else b""
        self.request = (b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\naccept: text/event-stream\r\n"
                        b"%scontent-length: %d\r\n\r\n%s" % (args.path.encode(), args.target.encode(), auth, len(body), body))

    def on_event(self, s, ns):
        if self.args.mode == "hold":
            if not s.counted:
                s.counted = True
                self.established += 1
            return
        if self.running:
            self.lat.append(ns)

    def on_done(self, s):
        if s.status != 200:
            self.errors += 1
        elif self.running:
            self.streams += 1


def pct(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[i] / 1e6


async def run(args):
    c = Client(args)
    loop = asyncio.get_running_loop()
    conns = []
    sem = asyncio.Semaphore(200)

    async def open_one():
        async with sem:
            for _ in range(3):
                try:
                    _, p = await loop.create_connection(lambda: Stream(c), c.host, c.port)
                    conns.append(p)
                    return
                except OSError:
                    await asyncio.sleep(0.05)
            c.errors += 1

    if args.mode == "latency":
        await asyncio.gather(*(open_one() for _ in range(args.conns)))
        start = time.monotonic()
        await asyncio.sleep(args.duration)
        c.running = False
        elapsed = time.monotonic() - start
        for p in conns:
            if p.transport:
                p.transport.close()
        lat = sorted(c.lat)
        print(json.dumps({"streams": c.streams, "events": len(lat), "errors": c.errors, "seconds": elapsed,
                          "p50": pct(lat, 50), "p99": pct(lat, 99), "p999": pct(lat, 99.9)}), flush=True)
        return
    # hold
    start = time.monotonic()
    await asyncio.gather(*(open_one() for _ in range(args.conns)))
    deadline = start + args.establish_timeout
    while c.established < args.conns and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    print(json.dumps({"established": c.established, "wanted": args.conns, "connect_errors": c.errors,
                      "ended": c.ended,
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or (sys.stdin.buffer.read1(4096) or stdin_closed.set_result(None)))
    try:
        await asyncio.wait_for(stdin_closed, args.duration)
    except asyncio.TimeoutError:
        pass
    c.running = False
    for p in conns:
        if p.transport:
            p.transport.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["latency", "hold"], default="latency")
    p.add_argument("--target", required=True, help="host:port")
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default="tiny")
    p.add_argument("--key", default="")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--events", type=int, default=16)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--establish-timeout", type=float, default=60)
    args = p.parse_args()
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
