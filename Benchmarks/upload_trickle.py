"""Clients uploading 220 KB chat prompts the way a remote client's bytes reach a gateway: in
pieces (16 KiB by default) with a pause between, over keep-alive connections, one request at a
time each. Prints one line: requests completed, seconds, and failures.

    python3 Benchmarks/upload_trickle.py PORT [--conns 20] [--seconds 5] [--piece 16384] [--pause-ms 1]
"""
import argparse
import json
import socket
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("--conns", type=int, default=20)
ap.add_argument("--seconds", type=float, default=5)
ap.add_argument("--piece", type=int, default=16384)
ap.add_argument("--pause-ms", type=float, default=1.0)
a = ap.parse_args()

# The same 220 KB prompt as Benchmarks/compare's large-prompt section.
filler = ("The quick brown fox jumps over the lazy dog. " * 5000)[:220 * 1024]
body = json.dumps({"model": "tiny", "messages": [{"role": "system", "content": filler},
                                                 {"role": "user", "content": "Summarize."}], "max_tokens": 8}).encode()
request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n" % len(body)) + body
done, failed = [0], [0]
lock = threading.Lock()
deadline = time.monotonic() + a.seconds


def response(s):
    """Reads one Content-Length framed response: its status, and whether the server closes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    fields = [h.lower() for h in head.split(b"\r\n")[1:]]
    n = int([h.split(b":")[1] for h in fields if h.startswith(b"content-length:")][0])
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        rest += d
    return int(head.split(b" ")[1]), any(h.replace(b" ", b"") == b"connection:close" for h in fields)


def client():
    ok = bad = 0
    s = socket.create_connection(("127.0.0.1", a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while time.monotonic() < deadline:
        try:
            for i in range(0, len(request), a.piece):
                s.sendall(request[i:i + a.piece])
                time.sleep(a.pause_ms / 1000)
            status, close = response(s)
            if status == 200:
                ok += 1
            else:
                bad += 1
            if close:  # nginx closes when the upstream answered before the body was all sent
                s.close()
                s = socket.create_connection(("127.0.0.1", a.port))
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            bad += 1
            s.close()
            s = socket.create_connection(("127.0.0.1", a.port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.close()
    with lock:
        done[0] += ok
        failed[0] += bad


started = time.monotonic()
threads = [threading.Thread(target=client) for _ in range(a.conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(done[0], round(time.monotonic() - started, 2), failed[0])
