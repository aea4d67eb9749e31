"""A small OTLP/HTTP trace receiver for tests: decodes what Sluice posts to /v1/traces with the
official `opentelemetry-proto` package (so Sluice's hand-written encoder is checked against the
real schema) and keeps each span as a plain dict.

In pytest: `Receiver()` (a context manager; `.spans`, `.requests`, `.wait_spans(n)`).
From other test runners (the Swift tests run it as a subprocess):
    python otlp_receiver.py --port-file P --out SPANS.jsonl [--status 500]
        serve on a free loopback port (written to P); one JSON line per decoded span
    python otlp_receiver.py --decode FILE
        decode one ExportTraceServiceRequest from FILE and print its spans as JSON lines
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind is None:
        return None
    return getattr(v, kind)


def attributes(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            raise ValueError(f"attribute {kv.key} appears twice")
        out[kv.key] = any_value(kv.value)
    return out


def decode(body):
    """The spans of one ExportTraceServiceRequest, as dicts (ids in hex)."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    req.ParseFromString(body)
    spans = []
    for rs in req.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append({
                    "trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name, "kind": s.kind, "start": s.start_time_unix_nano, "end": s.end_time_unix_nano,
                    "attributes": attributes(s.attributes),
                    "events": [{"name": e.name, "time": e.time_unix_nano, "attributes": attributes(e.attributes)} for e in s.events],
                    "status": {"code": s.status.code, "message": s.status.message}, "flags": s.flags,
                    "resource": resource, "scope": {"name": ss.scope.name, "version": ss.scope.version},
                })
    return spans


class Receiver:
    """An OTLP/HTTP receiver on a free loopback port (`.port`); `status` is what it answers."""

    def __init__(self, status=200):
        spans, requests, errors = [], [], []
        self.spans, self.requests, self.errors, self.status = spans, requests, errors, status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"), "bytes": len(body)})
                try:
                    got = decode(body)
                except Exception as e:  # a malformed message fails the tests that look at .errors
                    errors.append(repr(e))
                    got = []
                if outer.status == 200:
                    spans.extend(got)
                reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_spans(self, n, timeout=10.0):
        end = time.time() + timeout
        while len(self.spans) < n and time.time() < end:
            time.sleep(0.05)
        return list(self.spans)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file")
    ap.add_argument("--out")
    ap.add_argument("--status", type=int, default=200)
    ap.add_argument("--decode")
    a = ap.parse_args()
    # A parent that blocks SIGTERM (the Swift test runner's threads may) passes the mask on.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM, signal.SIGINT])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if a.decode:
        with open(a.decode, "rb") as f:
            for s in decode(f.read()):
                print(json.dumps(s, sort_keys=True))
        return
    r = Receiver(status=a.status)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(r.port))
    os.replace(a.port_file + ".tmp", a.port_file)
    written = 0
    while True:  # the Swift test ends this process
        while written < len(r.spans):
            with open(a.out, "a") as f:
                f.write(json.dumps(r.spans[written], sort_keys=True) + "\n")
            written += 1
        for e in r.errors:
            print("decode error:", e, file=sys.stderr, flush=True)
        r.errors.clear()
        time.sleep(0.02)


if __name__ == "__main__":
    main()
