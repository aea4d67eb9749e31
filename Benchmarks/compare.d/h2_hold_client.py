#!/usr/bin/env python3
"""Holds many SSE streams open over cleartext HTTP/2 (prior knowledge), for Benchmarks/compare's
open-streams memory section.

HTTP/1.1 needs a connection per stream and a proxy holds two descriptors per stream, so 10,000
streams need more than this sandbox's hard RLIMIT_NOFILE of 20,000. Over HTTP/2 the client side
multiplexes --per-conn streams on a connection (100: under nginx's 128 and HAProxy's 100 default
concurrent-stream limits), so the proxy holds ~10,100 descriptors for 10,000 streams: the same
streams upstream (one HTTP/1.1 connection each), far fewer client connections.

Opens --streams streams (POST chat, stream: true, max_tokens 100000 = the fixed SSE upstream keeps
each open), waits until each has delivered its first event, prints
{"established", "wanted", "connections", "connect_errors", "ended", "seconds"} and holds them until
stdin closes or --duration passes (the protocol of stream_client.py's hold mode). Needs `h2`.
"""
import argparse
import asyncio
import json
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


class Conn:
    def __init__(self, client, n):
        self.c = client
        self.n = n
        self.first = set()   # streams that delivered their first body bytes
        self.open = set()

    async def run(self):
        a = self.c.args
        host, port = a.target.split(":")
        try:
            reader, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            self.c.connect_errors += 1
            return
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.initiate_connection()
        # Room for every stream's events without window updates on the hot path.
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        headers = [(":method", "POST"), (":path", a.path), (":scheme", "http"), (":authority", a.target),
                   ("content-type", "application/json"), ("accept", "text/event-stream")]
        if a.key:
            headers.append(("authorization", f"Bearer {a.key}"))
        for _ in range(self.n):
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, headers)
            conn.send_data(sid, self.c.body, end_stream=True)
            self.open.add(sid)
        writer.write(conn.data_to_send())
        try:
            while self.open:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for e in conn.receive_data(data):
                    if isinstance(e, h2.events.DataReceived):
                        conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                        if e.stream_id not in self.first:
                            self.first.add(e.stream_id)
                            self.c.established += 1
                    elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                        if e.stream_id in self.open:
                            self.open.discard(e.stream_id)
                            self.c.ended += 1
                    elif isinstance(e, h2.events.ConnectionTerminated):
                        self.c.ended += len(self.open)
                        self.open.clear()
                out = conn.data_to_send()
                if out:
                    writer.write(out)
        except (OSError, h2.exceptions.ProtocolError):
            self.c.ended += len(self.open)
        finally:
            writer.close()


class Client:
    def __init__(self, args):
        self.args = args
        self.established = 0
        self.ended = 0
        self.connect_errors = 0
        self.body = json.dumps({"model": args.model, "messages": [{"role": "user", "content": "Say hello."}],
                                "max_tokens": 100000, "stream": True}).encode()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--path", default="/v1/chat/completions")
    p.add_argument("--model", default="tiny")
    p.add_argument("--key", default="")
    p.add_argument("--streams", type=int, default=10000)
    p.add_argument("--per-conn", type=int, default=100)
    p.add_argument("--establish-timeout", type=float, default=120)
    p.add_argument("--duration", type=float, default=300)
    args = p.parse_args()
    c = Client(args)
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    sizes = [args.per_conn] * (args.streams // args.per_conn)
    if args.streams % args.per_conn:
        sizes.append(args.streams % args.per_conn)
    tasks = []
    for n in sizes:
        tasks.append(asyncio.create_task(Conn(c, n).run()))
        await asyncio.sleep(0.002)  # pace the opening a little, as a load balancer would
    deadline = start + args.establish_timeout
    while c.established + c.ended < args.streams and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    print(json.dumps({"established": c.established, "wanted": args.streams, "connections": len(sizes),
                      "connect_errors": c.connect_errors, "ended": c.ended,
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
    stdin_closed = loop.create_future()
    loop.add_reader(sys.stdin.fileno(),
                    lambda: stdin_closed.done() or (sys.stdin.buffer.read1(4096) or stdin_closed.set_result(None)))
    try:
        await asyncio.wait_for(stdin_closed, args.duration)
    except asyncio.TimeoutError:
        pass
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
