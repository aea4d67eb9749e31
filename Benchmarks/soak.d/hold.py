#!/usr/bin/env python3
"""Idle keep-alive and slowloris connections against a gateway, for Benchmarks/soak.sh
(stdlib asyncio only).

--idle N       connections that each make one request (GET --idle-path), read the answer, then
               stay open and silent (keep-alive connections with nothing to do).
--slowloris M  connections that send a request head one byte every --byte-interval seconds and
               never finish it. When the gateway answers (408 after its client-header timeout)
               or closes, the connection is counted and replaced at once: the pressure stays.

Writes {"ready": ...} as one line to --ready-file once every idle connection has made its
request and every slowloris connection is open, then holds until SIGTERM/SIGINT or --duration,
and prints one JSON line of statistics on stdout.
"""
import argparse
import asyncio
import json
import resource
import signal
import time

HEAD = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
        b"User-Agent: slowloris\r\nAccept: */*\r\nX-Padding: " + b"a" * 2000 + b"\r\nContent-Length: 64\r\n\r\n")


class Stats:
    def __init__(self):
        self.idle_open = 0
        self.idle_failed = 0
        self.idle_closed_by_server = 0
        self.slow_open = 0
        self.slow_started = 0
        self.slow_answered = {}      # status -> count
        self.slow_closed_silently = 0
        self.slow_connect_errors = 0
        self.slow_bytes_sent = 0


async def idle_conn(args, st, sem, ready):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(args.host, args.port), 30)
            w.write(b"GET %s HTTP/1.1\r\nHost: soak\r\n\r\n" % args.idle_path.encode())
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
            n = 0
            for ln in head.split(b"\r\n"):
                if ln.lower().startswith(b"content-length:"):
                    n = int(ln.split(b":")[1])
            if n:
                await asyncio.wait_for(r.readexactly(n), 30)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
        except Exception:  # noqa: BLE001 - counted
            st.idle_failed += 1
            ready()
            return
    st.idle_open += 1
    ready()
    try:
        await r.read(1)   # holds here; returns (b"") only when the server closes
    except Exception:  # noqa: BLE001 - a reset is a close too
        pass
    st.idle_closed_by_server += 1
    st.idle_open -= 1


async def slow_conn(args, st, first, started):
    """One slowloris slot: a connection dribbling a head; replaced when the server ends it."""
    while True:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(args.host, args.port), 30)
        except Exception:  # noqa: BLE001
            st.slow_connect_errors += 1
            await asyncio.sleep(0.5)
            continue
        st.slow_open += 1
        st.slow_started += 1
        if first:
            first = False
            started()
        reader = asyncio.ensure_future(r.read(64))
        i = 0
        try:
            while not reader.done():
                w.write(HEAD[i % len(HEAD):i % len(HEAD) + 1])
                st.slow_bytes_sent += 1
                i += 1
                await asyncio.wait([reader], timeout=args.byte_interval)
            d = reader.result()
            if d.startswith(b"HTTP/1.1 "):
                code = d[9:12].decode()
                st.slow_answered[code] = st.slow_answered.get(code, 0) + 1
            else:
                st.slow_closed_silently += 1
        except Exception:  # noqa: BLE001 - reset by the server
            st.slow_closed_silently += 1
        finally:
            st.slow_open -= 1
            reader.cancel()
            w.close()


async def main(args):
    st = Stats()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    pending = [args.idle + args.slowloris]

    def ready():
        pending[0] -= 1
        if pending[0] == 0:
            with open(args.ready_file, "w") as f:
                f.write(json.dumps({"ready": True, "idle_open": st.idle_open, "idle_failed": st.idle_failed,
                                    "slowloris_open": st.slow_open,
                                    "seconds": round(time.monotonic() - t0, 1)}) + "\n")

    sem = asyncio.Semaphore(256)
    tasks = [asyncio.ensure_future(idle_conn(args, st, sem, ready)) for _ in range(args.idle)]
    # Slowloris connections start after the idle ones are in (so both counts are reached).
    while pending[0] > args.slowloris and not stop.is_set():
        await asyncio.sleep(0.05)
    for k in range(args.slowloris):
        tasks.append(asyncio.ensure_future(slow_conn(args, st, True, ready)))
        if k % 100 == 99:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(stop.wait(), args.duration)
    except asyncio.TimeoutError:
        pass
    out = {"idle_requested": args.idle, "idle_open_at_end": st.idle_open, "idle_failed": st.idle_failed,
           "idle_closed_by_server": st.idle_closed_by_server,
           "slowloris_slots": args.slowloris, "slowloris_open_at_end": st.slow_open,
           "slowloris_connections_made": st.slow_started, "slowloris_answers": st.slow_answered,
           "slowloris_closed_without_answer": st.slow_closed_silently,
           "slowloris_connect_errors": st.slow_connect_errors, "slowloris_bytes_sent": st.slow_bytes_sent,
           "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(out), flush=True)
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=int, default=10000)
    p.add_argument("--idle-path", default="/v1/models")
    p.add_argument("--slowloris", type=int, default=1000)
    p.add_argument("--byte-interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=600)
    p.add_argument("--ready-file", required=True)
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(a))
