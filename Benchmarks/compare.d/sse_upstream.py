#!/usr/bin/env python3
"""A tiny fixed-response streaming upstream for Benchmarks/compare (stdlib asyncio only).

POST (any path): an OpenAI-shaped SSE stream over HTTP/1.1 chunked encoding, keep-alive.
  The number of content events is the request's "max_tokens" (default 16), one every
  --interval-ms. Each event carries "t": the server's CLOCK_MONOTONIC in ns at the moment it was
  written, so a client on the same machine measures per-event delivery latency exactly
  (arrival - t); a proxy's added latency is that minus the direct run's.
  "max_tokens" >= 100000 is hold mode: one event at once, then one every --hold-interval-s
  until the client goes away (for the open-streams memory test).
  A body with "stream": false gets a small chat-completion JSON instead.
GET (any path): 200 with a small JSON (health checks, /v1/models, router probes).
"""
import argparse
import asyncio
import json
import re
import socket
import time

MAX_TOKENS = re.compile(rb'"max_tokens"\s*:\s*(\d+)')
STREAM_FALSE = re.compile(rb'"stream"\s*:\s*false')

JSON_BODY = (b'{"id":"chatcmpl-1","object":"chat.completion","created":0,"model":"tiny","choices":[{"index":0,'
             b'"message":{"role":"assistant","content":"Hello!"},"finish_reason":"stop"}],'
             b'"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}')
MODELS_BODY = (b'{"object":"list","data":[{"id":"tiny","object":"model","created":0,"owned_by":"bench",'
               b'"root":"tiny","parent":null,"max_model_len":32768}]}')
HEAD_SSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
EVENT = ('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"tiny",'
         '"choices":[{"index":0,"delta":{"content":"@%d "},"finish_reason":null}]}\n\n')
LAST = ('data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":0,"model":"tiny",'
        '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
        '"usage":{"prompt_tokens":9,"completion_tokens":%d,"total_tokens":%d}}\n\ndata: [DONE]\n\n')


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Conn(asyncio.Protocol):
    def __init__(self, args):
        self.args = args
        self.buf = bytearray()
        self.transport = None
        self.busy = False
        self.handle = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        if self.handle:
            self.handle.cancel()
        self.transport = None

    def data_received(self, data):
        self.buf += data
        self.parse()

    def parse(self):
        while not self.busy and self.transport is not None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).lower()
            length = 0
            m = re.search(rb"\r\ncontent-length:\s*(\d+)", head)
            if m:
                length = int(m.group(1))
            if b"transfer-encoding: chunked" in head:
                # Rare from proxies for small bodies; find the terminating chunk.
                z = self.buf.find(b"\r\n0\r\n\r\n", end)
                if z < 0:
                    return
                body = bytes(self.buf[end + 4:z + 7])
                del self.buf[:z + 7]
            else:
                if len(self.buf) < end + 4 + length:
                    return
                body = bytes(self.buf[end + 4:end + 4 + length])
                del self.buf[:end + 4 + length]
            self.respond(head, body)

    def respond(self, head, body):
        if head.startswith(b"get"):
            out = MODELS_BODY if b"/v1/models" in head.split(b"\r\n", 1)[0] else b'{"status":"ok"}'
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(out), out))
            return
        if STREAM_FALSE.search(body):
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                                 % (len(JSON_BODY), JSON_BODY))
            return
        m = MAX_TOKENS.search(body)
        n = int(m.group(1)) if m else 16
        self.busy = True
        self.transport.write(HEAD_SSE)
        loop = asyncio.get_running_loop()
        if n >= 100000:
            self.hold()
        else:
            self.remaining = self.total = n
            self.handle = loop.call_later(self.args.interval_ms / 1000, self.tick)

    def hold(self):
        if self.transport is None:
            return
        self.transport.write(chunk((EVENT % time.monotonic_ns()).encode()))
        self.handle = asyncio.get_running_loop().call_later(self.args.hold_interval_s, self.hold)

    def tick(self):
        if self.transport is None:
            return
        self.transport.write(chunk((EVENT % time.monotonic_ns()).encode()))
        self.remaining -= 1
        if self.remaining > 0:
            self.handle = asyncio.get_running_loop().call_later(self.args.interval_ms / 1000, self.tick)
            return
        self.transport.write(chunk((LAST % (self.total, self.total + 9)).encode()) + b"0\r\n\r\n")
        self.handle = None
        self.busy = False
        if self.buf:
            self.parse()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--interval-ms", type=float, default=20.0)
    p.add_argument("--hold-interval-s", type=float, default=5.0)
    args = p.parse_args()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(args), "127.0.0.1", args.port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
