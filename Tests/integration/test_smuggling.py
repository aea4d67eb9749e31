"""Issue 9: request smuggling and RFC 9112 conformance of the HTTP/1.1 front end, end to end.

Raw bytes go to `sluice serve` over a plain socket; behind it a RECORDING upstream (a raw-socket
HTTP/1.1 server in this module) keeps the exact bytes of every request it receives and answers
each with a fixed 200 carrying a Content-Length and the request's sequence number. Every case
checks three things:

* the status Sluice answers with (what RFC 9112 requires, or the stricter of the choices it
  allows), with an OpenAI-style JSON error body for errors;
* that the connection is closed after a framing or syntax error (RFC 9112 §6.3, §9.6), so
  nothing the client sends after the bad request is ever interpreted;
* that the upstream never sees a request the client did not send: the recorded upstream
  requests are compared with what the client sent (count, method, path, body bytes), and an
  upstream connection never carries a byte left over after the last whole request.

One `sluice serve` process and one recording upstream serve the whole module (a case takes
milliseconds; the module runs in a few seconds).
"""
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import SLUICE, Proc, free_port, wait_port

# ---------------------------------------------------------------------------------------------
# The recording upstream


class Recorded:
    """One request as the upstream parsed it off the wire."""

    def __init__(self, conn, raw, method, target, version, headers, body):
        self.conn, self.raw, self.method, self.target = conn, raw, method, target
        self.version, self.headers, self.body = version, headers, body

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return f"Recorded({self.method!r} {self.target!r} body={self.body!r} raw={self.raw!r})"


class RecordingUpstream:
    """A raw-socket HTTP/1.1 server: keep-alive, pipelining, Content-Length and chunked request
    bodies. Logs every request's exact bytes; answers each with 200 and a Content-Length.
    A byte stream it cannot parse as HTTP/1.1 is logged in `errors` (the test fails on it)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []   # Recorded, in arrival order
        self.raw = []        # per connection: every byte received
        self.errors = []
        self.leftover = {}   # connection -> unparsed bytes at EOF
        self.interim_100 = False  # answer Expect: 100-continue with an interim 100 first
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.errors.clear()
            self.raw.clear()
            self.leftover.clear()

    def bytes_received(self):
        with self.lock:
            return sum(len(r) for r in self.raw)

    def close(self):
        self.closing = True
        self.sock.close()

    def _accept(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                cid = len(self.raw)
                self.raw.append(bytearray())
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        buf = bytearray()
        seq_local = 0
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                with self.lock:
                    if cid < len(self.raw):
                        self.raw[cid] += data
                buf += data
                while True:
                    r = self._parse(buf, cid)
                    if r is None:
                        break
                    if r is False:
                        c.close()
                        return
                    rec, used = r
                    del buf[:used]
                    with self.lock:
                        self.requests.append(rec)
                        n = len(self.requests)
                    seq_local += 1
                    if self.interim_100 and any(v.lower() == "100-continue" for v in rec.header("expect")):
                        c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = b'{"seq":%d,"path":%s}' % (n, json.dumps(rec.target).encode())
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                              % (len(body), body))
        except OSError:
            pass
        finally:
            if buf:
                with self.lock:
                    self.leftover[cid] = bytes(buf)
            c.close()

    def _parse(self, buf, cid):
        """(Recorded, bytes used), None when incomplete, False on a protocol error."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(buf[:end])
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return self._error(cid, f"bad request line {lines[0]!r}")
        headers = []
        for ln in lines[1:]:
            if b":" not in ln or ln[:1] in (b" ", b"\t"):
                return self._error(cid, f"bad header line {ln!r}")
            k, v = ln.split(b":", 1)
            if any(ch in v for ch in b"\x00\r\n"):
                return self._error(cid, f"control character in {ln!r}")
            headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        names = [k.lower() for k, _ in headers]
        pos = end + 4
        te = [v for k, v in headers if k.lower() == "transfer-encoding"]
        cl = [v for k, v in headers if k.lower() == "content-length"]
        if te and cl:
            return self._error(cid, "both Transfer-Encoding and Content-Length reached the upstream")
        if len(cl) > 1 or names.count("host") != 1:
            return self._error(cid, f"ambiguous head reached the upstream: {head!r}")
        if te:
            if [t.strip().lower() for t in ",".join(te).split(",")] != ["chunked"]:
                return self._error(cid, f"Transfer-Encoding {te!r} reached the upstream")
            body = bytearray()
            while True:
                le = buf.find(b"\r\n", pos)
                if le < 0:
                    return None
                size = int(bytes(buf[pos:le]).split(b";")[0], 16)
                pos = le + 2
                if size == 0:
                    te_end = buf.find(b"\r\n\r\n", pos - 2)
                    if te_end < 0:
                        return None
                    pos = te_end + 4
                    break
                if len(buf) < pos + size + 2:
                    return None
                body += buf[pos:pos + size]
                pos += size + 2
            body = bytes(body)
        elif cl:
            if not cl[0].isdigit():
                return self._error(cid, f"Content-Length {cl[0]!r} reached the upstream")
            n = int(cl[0])
            if len(buf) < pos + n:
                return None
            body = bytes(buf[pos:pos + n])
            pos += n
        else:
            body = b""
        rec = Recorded(cid, bytes(buf[:pos]), parts[0].decode("latin-1"), parts[1].decode("latin-1"),
                       parts[2].decode("latin-1"), headers, body)
        return rec, pos

    def _error(self, cid, what):
        with self.lock:
            self.errors.append((cid, what))
        return False


# ---------------------------------------------------------------------------------------------
# A raw client


class Response:
    def __init__(self, status, reason, headers, body, raw):
        self.status, self.reason, self.headers, self.body, self.raw = status, reason, headers, body, raw

    def header(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"Response({self.status} {self.raw[:300]!r})"


class RawClient:
    def __init__(self, port, timeout=3.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            d = self.s.recv(65536)
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def _line(self):
        while b"\r\n" not in self.buf:
            if not self._fill():
                return None
        i = self.buf.index(b"\r\n")
        ln = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return ln

    def response(self, head_request=False):
        """The next response (interim 1xx responses included), or None at EOF."""
        raw = bytearray()
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end])
        del self.buf[:end + 4]
        raw += head + b"\r\n\r\n"
        lines = head.split(b"\r\n")
        version, status, *reason = lines[0].split(b" ", 2)
        assert version == b"HTTP/1.1", lines[0]
        status = int(status)
        headers = []
        for ln in lines[1:]:
            k, v = ln.split(b":", 1)
            headers.append((k.decode(), v.strip().decode("latin-1")))
        hd = {k.lower(): v for k, v in headers}
        body = bytearray()
        if 100 <= status < 200 or status in (204, 304) or head_request:
            pass
        elif "transfer-encoding" in hd:
            assert hd["transfer-encoding"].lower() == "chunked", hd
            while True:
                ln = self._line()
                if ln is None:
                    raise ConnectionError("chunked response cut off")
                size = int(ln.split(b";")[0], 16)
                if size == 0:
                    while True:
                        t = self._line()
                        if t is None or t == b"":
                            break
                    break
                while len(self.buf) < size + 2:
                    if not self._fill():
                        raise ConnectionError("chunked response cut off")
                body += self.buf[:size]
                del self.buf[:size + 2]
        elif "content-length" in hd:
            n = int(hd["content-length"])
            while len(self.buf) < n:
                if not self._fill():
                    raise ConnectionError("response body cut off")
            body += self.buf[:n]
            del self.buf[:n]
        else:
            while self._fill():
                pass
            body += self.buf
            self.buf.clear()
        raw += body
        return Response(status, b"".join(reason).decode(), headers, bytes(body), bytes(raw))

    def closed(self, within=2.0):
        """True when the server closes the connection (EOF or reset) within `within` seconds,
        with no further response bytes."""
        self.s.settimeout(within)
        try:
            while not self.eof:
                if not self._fill():
                    break
        except socket.timeout:
            return False
        return self.eof and not self.buf

    def close(self):
        self.s.close()


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def gateway():
    up = RecordingUpstream()
    port, admin = free_port(), free_port()
    d = tempfile.mkdtemp(prefix="sluice-smuggling-")
    cfg = os.path.join(d, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
listen: [{{ address: "127.0.0.1:{port}" }}]
admin: {{ address: "127.0.0.1:{admin}" }}
workers: 1
timeouts: {{ drain_delay: 0s, client_header: 2s, client_body: 2s }}
health: {{ interval: 0 }}
telemetry: {{ interval: 0 }}
limits: {{ max_body_bytes: 1MiB }}
pools: [{{ name: p, endpoints: ["http://127.0.0.1:{up.port}"] }}]
""")
    p = Proc([SLUICE, "serve", "--config", cfg])
    wait_port(port)
    p.port, p.upstream, p.admin = port, up, admin
    yield p
    p.stop(signal.SIGTERM)
    up.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def gw(gateway):
    gateway.upstream.reset()
    gateway.upstream.interim_100 = False
    yield gateway
    up = gateway.upstream
    assert not up.errors, f"the upstream received malformed bytes: {up.errors}"


def settle(up, seconds=0.1):
    """Gives a wrongly forwarded request time to arrive at `up` before it is checked."""
    time.sleep(seconds)


def assert_openai_error(r, status):
    assert r.status == status, r
    assert r.header("content-type") == ["application/json"], r
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"], r
    assert set(err) == {"message", "type", "param", "code"}, r
    if status < 500:
        assert err["type"] == "invalid_request_error", r
    else:  # 501/505 for what the client sent are still the client's problem; 5xx otherwise
        assert err["type"] in ("invalid_request_error", "server_error", "timeout"), r


def reject(gw, raw, status=400):
    """Sends `raw` (one write); expects one error response, the connection closed, and nothing
    at all at the upstream."""
    c = RawClient(gw.port)
    c.send(raw)
    r = c.response()
    assert r is not None, f"connection closed without a response to {raw!r}"
    assert_openai_error(r, status)
    assert r.header("connection") == ["close"], r
    assert c.closed(), "the connection stayed open after a rejected request"
    c.close()
    settle(gw.upstream)
    assert gw.upstream.requests == [], f"the upstream saw {gw.upstream.requests}"
    assert gw.upstream.bytes_received() == 0
    return r


def accept(gw, raw, expected, keep_open=True):
    """Sends `raw` (one write); expects one 200 per entry of `expected` [(method, path, body)],
    in order, and exactly those requests at the upstream."""
    c = RawClient(gw.port)
    c.send(raw)
    got = []
    for _ in expected:
        r = c.response()
        assert r is not None, f"connection closed early; upstream saw {gw.upstream.requests}"
        assert r.status == 200, r
        got.append(r.json())
    if keep_open:
        assert not c.closed(within=0.2), "the connection was closed after a valid request"
    c.close()
    settle(gw.upstream, 0.05)
    recs = gw.upstream.requests
    assert [(q.method, q.target, q.body) for q in recs] == expected
    # Responses are in request order and each one is the answer to its own request.
    assert [g["path"] for g in got] == [e[1] for e in expected]
    assert [g["seq"] for g in got] == sorted(g["seq"] for g in got)
    assert gw.upstream.leftover == {}
    return recs


H = b"Host: example\r\n"


# ---------------------------------------------------------------------------------------------
# Sanity: the harness itself


def test_plain_post_reaches_upstream_exactly(gw):
    recs = accept(gw, b"POST /v1/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello",
                  [("POST", "/v1/x", b"hello")])
    assert recs[0].header("content-length") == ["5"]
    assert recs[0].header("transfer-encoding") == []


# ---------------------------------------------------------------------------------------------
# CL.TE and TE.CL: both framings in one request. RFC 9112 §6.1: a server MAY reject it or use
# Transfer-Encoding alone, and MUST close the connection either way. Sluice rejects (the safe
# choice for a proxy: no guessing which framing the client meant).

SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"


@pytest.mark.parametrize("raw", [
    # CL.TE: a front end using CL would forward "0\r\n\r\nG...", a back end using TE would end the
    # body at the zero chunk and take the rest as a new request.
    b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLED)) + SMUGGLED,
    # TE.CL: the chunk holds the smuggled request; CL says the body is 4 bytes.
    b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
    # The same with the fields in the other order.
    b"POST /a HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
    # Content-Length: 0 with a chunked body.
    b"POST /a HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
], ids=["CL.TE", "TE.CL", "TE.CL-reversed", "CL0.TE"])
def test_content_length_with_transfer_encoding_is_rejected_and_closed(gw, raw):
    reject(gw, raw + SMUGGLED, 400)


# ---------------------------------------------------------------------------------------------
# TE.TE: obfuscated Transfer-Encoding. RFC 9112 §6.3 (4): if Transfer-Encoding is present and
# chunked is not the final coding, the server MUST answer 400 and close. §6.1: a coding the
# server does not understand (with chunked final) SHOULD get 501. §5.1: whitespace between the
# field name and the colon MUST get 400. Control characters are not field-value characters
# (RFC 9110 §5.5). Each obfuscation comes with a Content-Length too, so a parser that ignored
# the obfuscated field would frame by CL: either way the upstream must see nothing.

def te_case(te_lines, body=b"5\r\nhello\r\n0\r\n\r\n", cl=True):
    extra = b"Content-Length: %d\r\n" % len(body) if cl else b""
    return b"POST /te HTTP/1.1\r\n" + H + te_lines + extra + b"\r\n" + body


def rid(v):
    """A short readable test id for raw bytes."""
    if not isinstance(v, bytes):
        return str(v)
    return repr(v)[2:-1].replace("\\r\\n", "|").replace("Transfer-Encoding", "TE").replace("Content-Length", "CL")[:48]


def te_id(v):
    return rid(v) if isinstance(v, bytes) else ("with-CL" if v is True else "no-CL" if v is False else str(v))


@pytest.mark.parametrize("te_lines,cl,status", [
    (b"Transfer-Encoding: chunked, x\r\n", False, 400),
    (b"Transfer-Encoding: chunked, x\r\n", True, 400),
    (b"Transfer-Encoding: chunked, chunked\r\n", False, 400),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", False, 400),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", False, 400),
    (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", False, 400),
    (b"Transfer-Encoding: xchunked\r\n", True, 400),
    (b"Transfer-Encoding : chunked\r\n", True, 400),
    (b"Transfer-Encoding : chunked\r\n", False, 400),
    (b"Transfer-Encoding\t: chunked\r\n", True, 400),
    (b"Transfer-Encoding: \x0bchunked\r\n", True, 400),
    (b"Transfer-Encoding: chunked\x0b\r\n", True, 400),
    (b"Transfer-Encoding: \x0cchunked\r\n", True, 400),
    (b"Transfer-Encoding: chunked\x0c\r\n", True, 400),
    (b"Transfer-Encoding: chunked\x00\r\n", False, 400),
    (b"Transfer-Encoding: chunked\r\r\n", False, 400),
    (b"Transfer-Encoding:\r\n", True, 400),
    (b" Transfer-Encoding: chunked\r\n", True, 400),          # whitespace-started line after the request line
    (b"X: y\r\n Transfer-Encoding: chunked\r\n", True, 400),  # obs-fold hiding the field
    (b"Transfer-Encoding:\r\n chunked\r\n", True, 400),       # the value on an obs-fold line
    (b"Transfer-Encoding: gzip, chunked\r\n", False, 501),      # §6.1: a coding Sluice does not know, chunked final
    (b"Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n", False, 501),
], ids=te_id)
def test_obfuscated_transfer_encoding_is_rejected(gw, te_lines, cl, status):
    reject(gw, te_case(te_lines, cl=cl) + SMUGGLED, status)


@pytest.mark.parametrize("te_lines", [
    b"Transfer-Encoding: xchunked\r\n",
    b"Transfer-Encoding: chunkedx\r\n",
    b'Transfer-Encoding: "chunked"\r\n',
    b"Transfer-Encoding: identity\r\n",
    b"Transfer-Encoding: gzip\r\n",
], ids=te_id)
def test_transfer_encoding_not_ending_in_chunked_gets_400(gw, te_lines):
    # RFC 9112 §6.3 (4) is a MUST (400 and close), ahead of §6.1's SHOULD (501 for a coding the
    # server does not know). Sluice answered 501 here until this suite found it.
    reject(gw, te_case(te_lines, cl=False) + SMUGGLED, 400)


@pytest.mark.parametrize("te", [b"CHUNKED", b"Chunked", b"\tchunked", b"chunked \t", b"cHuNkEd"])
def test_transfer_coding_names_are_case_insensitive_and_ows_is_trimmed(gw, te):
    # RFC 9112 §7: transfer-coding names are case-insensitive; §5: OWS around a value is not
    # part of it. So these are plain chunked bodies, forwarded de-chunked with a Content-Length.
    recs = accept(gw, b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: " + te + b"\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                  [("POST", "/c", b"hello world")])
    assert recs[0].header("content-length") == ["11"]
    assert recs[0].header("transfer-encoding") == []


def test_transfer_encoding_in_http10_is_rejected(gw):
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as faulty framing.
    reject(gw, b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + SMUGGLED, 400)


# ---------------------------------------------------------------------------------------------
# Content-Length. RFC 9110 §8.6: 1*DIGIT; a list of identical values MAY be accepted as one.
# RFC 9112 §6.3 (5): an invalid Content-Length in a request MUST get 400 and a close.

@pytest.mark.parametrize("cl", [
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 5, 6\r\n",
    b"Content-Length: 6\r\nContent-Length: 5\r\n",
    b"Content-Length: -5\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length: 0x5\r\n",
    b"Content-Length: 5.0\r\n",
    b"Content-Length: 5 5\r\n",
    b"Content-Length: 1e1\r\n",
    b"Content-Length: five\r\n",
    b"Content-Length:\r\n",
    b"Content-Length: 99999999999999999999999\r\n",            # overflows 64 bits
    b"Content-Length: 18446744073709551621\r\n",               # 2^64 + 5: wraps to 5 if unchecked
    b"Content-Length: \x0b5\r\n",
    b"Content-Length : 5\r\n",
    b"Content-Length: 5\x00\r\n",
], ids=rid)
def test_invalid_content_length_is_rejected(gw, cl):
    reject(gw, b"POST /cl HTTP/1.1\r\n" + H + cl + b"\r\nhello" + SMUGGLED, 400)


def test_content_length_over_the_body_limit_gets_413(gw):
    # 15 digits parse; the body limit (1 MiB here) answers before any byte is read.
    reject(gw, b"POST /cl HTTP/1.1\r\n" + H + b"Content-Length: 999999999999999\r\n\r\nhello" + SMUGGLED, 413)


@pytest.mark.parametrize("cl", [
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5, 5\r\n",
    b"Content-Length:    5   \r\n",
    b"Content-Length:\t5\t\r\n",
    b"Content-Length: 005\r\n",
], ids=rid)
def test_equal_or_padded_content_length_is_one_length(gw, cl):
    # Accepted as 5 (RFC 9110 §8.6 allows collapsing identical values; OWS is not part of the
    # value). The upstream gets exactly one Content-Length: 5 and the 5 bytes — and the bytes
    # after them are the client's next request, answered on its own.
    recs = accept(gw, b"POST /cl HTTP/1.1\r\n" + H + cl + b"\r\nhello" + b"GET /next HTTP/1.1\r\n" + H + b"\r\n",
                  [("POST", "/cl", b"hello"), ("GET", "/next", b"")])
    assert recs[0].header("content-length") == ["5"]


# ---------------------------------------------------------------------------------------------
# Chunked bodies (RFC 9112 §7.1).

def chunked(body_lines):
    return b"POST /ch HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + body_lines


@pytest.mark.parametrize("body", [
    b"10000000000000005\r\nhello\r\n0\r\n\r\n",     # 17 hex digits: overflows 64 bits, wraps to 5
    b"ffffffffffffffff\r\nhello\r\n0\r\n\r\n",      # 2^64 - 1
    b"0000000000000000000005\r\nhello\r\n0\r\n\r\n",  # 22 digits: refused before any overflow (RFC 9112 §7.1)
    b"-5\r\nhello\r\n0\r\n\r\n",
    b"+5\r\nhello\r\n0\r\n\r\n",
    b"0x5\r\nhello\r\n0\r\n\r\n",
    b"\r\nhello\r\n0\r\n\r\n",                       # missing size
    b"5\nhello\r\n0\r\n\r\n",                        # bare LF after the size
    b"5\r\nhello\n0\r\n\r\n",                        # bare LF after the data
    b"5\r\nhello\r\n0\n\r\n",                        # bare LF after the last chunk
    b"5\rhello\r\n0\r\n\r\n",                        # bare CR
    b"3\r\nhello\r\n0\r\n\r\n",                      # data longer than the size
    b"5\r\nhelloXX0\r\n\r\n",                        # no CRLF after the data
    b"5;a=\x00\r\nhello\r\n0\r\n\r\n",               # NUL in a chunk extension
    b"5;a\nb\r\nhello\r\n0\r\n\r\n",                 # LF inside a chunk extension
    b"5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n",         # NUL in a trailer
], ids=rid)
def test_malformed_chunked_body_is_rejected(gw, body):
    reject(gw, chunked(body) + SMUGGLED, 400)


@pytest.mark.parametrize("body,payload", [
    (b"5;name=value\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b'5;name="quoted ; value"\r\nhello\r\n0\r\n\r\n', b"hello"),
    (b"5 ;ext\r\nhello\r\n0;last=1\r\n\r\n", b"hello"),
    (b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n", b"hello"),     # trailers are dropped
    (b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n", b"0123456789abcdefghij"),
    (b"000005\r\nhello\r\n0\r\n\r\n", b"hello"),
    (b"0\r\n\r\n", b""),
], ids=["ext", "quoted-ext", "bws-ext", "trailer", "hex-case", "leading-zeros", "empty"])
def test_valid_chunked_bodies_are_forwarded_exactly(gw, body, payload):
    recs = accept(gw, chunked(body) + b"GET /after HTTP/1.1\r\n" + H + b"\r\n",
                  [("POST", "/ch", payload), ("GET", "/after", b"")])
    assert recs[0].header("content-length") == [str(len(payload))]
    assert b"X-Trailer" not in recs[0].raw


# ---------------------------------------------------------------------------------------------
# The head: line endings, folding, controls, field names (RFC 9112 §2.2, §5; RFC 9110 §5.5).
# Bare LF MAY be accepted as a line end (§2.2); Sluice refuses it (nothing legitimate sends it,
# and a proxy that disagrees with its upstream about line ends is how smuggling starts).

@pytest.mark.parametrize("raw", [
    b"GET /lf HTTP/1.1\n" + b"Host: example\n\n",
    b"GET /lf HTTP/1.1\r\nHost: example\nX-A: b\r\n\r\n",
    b"GET /lf HTTP/1.1\r\nHost: example\r\n\n",
    b"\nGET /lf HTTP/1.1\r\nHost: example\r\n\r\n",
    b"GET /cr HTTP/1.1\r\nHost: example\rX-A: b\r\n\r\n",
    b"GET /cr HTTP/1.1\rHost: example\r\n\r\n",
    b"GET /fold HTTP/1.1\r\nHost: example\r\nX-A: b\r\n c\r\n\r\n",
    b"GET /fold HTTP/1.1\r\nHost: example\r\nX-A: b\r\n\tc\r\n\r\n",
    b"GET /ws HTTP/1.1\r\n Host: example\r\n\r\n",
    b"GET /nul HTTP/1.1\r\nHost: example\r\nX-A: a\x00b\r\n\r\n",
    b"GET /nul HTTP/1.1\r\nHost: example\r\nX-\x00A: b\r\n\r\n",
    b"GET /nul\x00 HTTP/1.1\r\nHost: example\r\n\r\n",
    b"GET /ctl HTTP/1.1\r\nHost: example\r\nX-A: a\x7fb\r\n\r\n",
    b"GET /ctl HTTP/1.1\r\nHost: example\r\nX-A: a\x1bb\r\n\r\n",
    b"GET /name HTTP/1.1\r\nHost: example\r\nX@A: b\r\n\r\n",
    b"GET /name HTTP/1.1\r\nHost: example\r\n: b\r\n\r\n",
    b"GET /name HTTP/1.1\r\nHost: example\r\nNoColon\r\n\r\n",
    b"GET /name HTTP/1.1\r\nHost: example\r\nX A: b\r\n\r\n",
    b"GET /host HTTP/1.1\r\n\r\n",                                   # §3.2: HTTP/1.1 without Host
    b"GET /host HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",             # §3.2: more than one Host
    b"GET /host HTTP/1.1\r\nHost : example\r\n\r\n",
], ids=rid)
def test_malformed_head_is_rejected(gw, raw):
    reject(gw, raw + SMUGGLED, 400)


# ---------------------------------------------------------------------------------------------
# The request line (RFC 9112 §3): method token, one SP, target, one SP, HTTP-version.

@pytest.mark.parametrize("line,status", [
    (b"G(T / HTTP/1.1", 400),
    (b"GE\x00T / HTTP/1.1", 400),
    (b"G\xc3\xa9T / HTTP/1.1", 400),
    (b" GET / HTTP/1.1", 400),
    (b"/ HTTP/1.1", 400),
    (b"GET\t/ HTTP/1.1", 400),
    (b"GET  / HTTP/1.1", 400),
    (b"GET / HTTP/1.1 ", 400),
    (b"GET /", 400),                 # no version (HTTP/0.9 style)
    (b"GET / ", 400),
    (b"GET /a b HTTP/1.1", 400),
    (b"GET / http/1.1", 400),        # HTTP-name is case-sensitive
    (b"GET / HTTP/1.10", 400),
    (b"GET / HTTP/1", 400),
    (b"GET / HTTTP/1.1", 400),
    (b"GET example/ HTTP/1.1", 400),
    (b"GET evil.com:80 HTTP/1.1", 400),
    (b"GET / HTTP/2.0", 505),
    (b"GET / HTTP/0.9", 505),
    (b"CONNECT evil:443 HTTP/1.1", 405),
], ids=rid)
def test_invalid_request_line_is_rejected(gw, line, status):
    r = reject(gw, line + b"\r\n" + H + b"\r\n" + SMUGGLED, status)
    assert r.status == status


def test_extension_method_is_forwarded_verbatim(gw):
    # Methods are case-sensitive tokens (RFC 9110 §9.1): `get` is not GET, and forwarding it
    # as-is lets the upstream decide (it is what the client sent).
    accept(gw, b"get /m HTTP/1.1\r\n" + H + b"\r\n" + b"PROPFIND /m HTTP/1.1\r\n" + H + b"\r\n",
           [("get", "/m", b""), ("PROPFIND", "/m", b"")])


# ---------------------------------------------------------------------------------------------
# absolute-form (RFC 9112 §3.2.2: a server MUST accept it; the upstream gets origin-form).

@pytest.mark.parametrize("target,path", [
    (b"http://evil/", "/"),
    (b"http://evil", "/"),
    (b"http://evil:8080/v1/models?x=1", "/v1/models?x=1"),
    (b"HTTPS://evil/a/b", "/a/b"),
    # RFC 3986 §3.2: the authority ends at '/', '?' or '#'. Sluice used to scan to the first '/'
    # and forwarded GET /admin for this one: a path the client never asked for.
    (b"http://evil?a=/admin", "/?a=/admin"),
    (b"http://evil?q=1", "/?q=1"),     # an empty path with a query is "/?q=1" (it used to lose the query)
])
def test_absolute_form_is_forwarded_as_origin_form(gw, target, path):
    recs = accept(gw, b"GET " + target + b" HTTP/1.1\r\nHost: evil\r\n\r\n", [("GET", path, b"")])
    assert recs[0].header("host") in (["evil"], ["evil:8080"])


def test_absolute_form_host_wins_over_host_field(gw):
    # RFC 9112 §3.2.2: with an absolute-form target the received Host is ignored and the Host
    # forwarded is generated from the target (Sluice used to forward the client's "good").
    recs = accept(gw, b"GET http://evil/p HTTP/1.1\r\nHost: good\r\n\r\n", [("GET", "/p", b"")])
    assert recs[0].header("host") == ["evil"]


# ---------------------------------------------------------------------------------------------
# Persistence, pipelining, 100-continue.

def test_http10_keep_alive_serves_two_requests_on_one_connection(gw):
    c = RawClient(gw.port)
    c.send(b"GET /one HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    r1 = c.response()
    assert r1 is not None and r1.status == 200 and r1.json()["path"] == "/one"
    assert r1.header("connection") != ["close"], r1
    c.send(b"POST /two HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc")
    r2 = c.response()
    assert r2 is not None and r2.status == 200 and r2.json()["path"] == "/two"
    assert not c.closed(within=0.2)
    c.close()
    settle(gw.upstream, 0.05)
    assert [(q.method, q.target, q.body) for q in gw.upstream.requests] == [("GET", "/one", b""), ("POST", "/two", b"abc")]


def test_http10_without_keep_alive_is_closed_after_the_response(gw):
    c = RawClient(gw.port)
    c.send(b"GET /one HTTP/1.0\r\n\r\nGET /two HTTP/1.0\r\n\r\n")
    r = c.response()
    assert r is not None and r.status == 200 and r.json()["path"] == "/one"
    assert c.closed()
    settle(gw.upstream)
    assert [(q.method, q.target) for q in gw.upstream.requests] == [("GET", "/one")]


@pytest.mark.parametrize("bad", [
    b"GET /bad HTTP/1.1\r\nHost: example\r\nX-A: a\x00b\r\n\r\n",
    b"POST /bad HTTP/1.1\r\nHost: example\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST /bad HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /bad HTTP/1.1\r\nHost: example\r\n fold\r\n\r\n",
    b"GET /bad HTTP/9.9\r\nHost: example\r\n\r\n",
    b"GARBAGE\r\n\r\n",
], ids=rid)
def test_request_pipelined_after_an_error_never_reaches_upstream(gw, bad):
    good = b"GET /good HTTP/1.1\r\n" + H + b"\r\n"
    c = RawClient(gw.port)
    c.send(bad + good + good)
    r = c.response()
    assert r is not None and r.status >= 400, r
    assert_openai_error(r, r.status)
    assert c.closed(), "the connection stayed open after the error"
    settle(gw.upstream)
    assert gw.upstream.requests == []


def test_error_after_valid_pipelined_requests_stops_there(gw):
    good = b"GET /ok%d HTTP/1.1\r\n" + H + b"\r\n"
    bad = b"GET /bad HTTP/1.1\r\nHost: example\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    c = RawClient(gw.port)
    c.send(good % 1 + good % 2 + bad + good % 3)
    statuses = []
    for _ in range(3):
        r = c.response()
        assert r is not None
        statuses.append(r.status)
    assert statuses == [200, 200, 400]
    assert c.closed()
    settle(gw.upstream)
    assert [q.target for q in gw.upstream.requests] == ["/ok1", "/ok2"]


def test_valid_pipeline_of_three_reaches_upstream_in_order(gw):
    raw = (b"GET /p1 HTTP/1.1\r\n" + H + b"\r\n"
           + b"POST /p2 HTTP/1.1\r\n" + H + b"Content-Length: 11\r\n\r\nhello world"
           + b"POST /p3 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    accept(gw, raw, [("GET", "/p1", b""), ("POST", "/p2", b"hello world"), ("POST", "/p3", b"abc")])


def test_pipeline_split_at_every_byte_boundary(gw):
    # The same pipeline delivered one byte per write: framing must not depend on segmentation.
    raw = (b"POST /s1 HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nab\r\n0\r\n\r\n"
           + b"GET /s2 HTTP/1.1\r\n" + H + b"\r\n")
    c = RawClient(gw.port)
    for i in range(len(raw)):
        c.send(raw[i:i + 1])
    got = [c.response(), c.response()]
    assert [g.json()["path"] for g in got] == ["/s1", "/s2"]
    c.close()
    settle(gw.upstream, 0.05)
    assert [(q.method, q.target, q.body) for q in gw.upstream.requests] == [("POST", "/s1", b"ab"), ("GET", "/s2", b"")]


@pytest.mark.parametrize("upstream_sends_100", [False, True])
def test_expect_100_continue(gw, upstream_sends_100):
    gw.upstream.interim_100 = upstream_sends_100
    c = RawClient(gw.port)
    c.send(b"POST /e HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    interim = c.response()
    assert interim is not None and interim.status == 100, interim
    settle(gw.upstream, 0.05)
    assert gw.upstream.requests == []      # nothing goes upstream before the body is complete
    c.send(b"hello")
    final = c.response()
    assert final is not None and final.status == 200 and final.json()["path"] == "/e"
    # Exactly one final response; the upstream's own interim 100 (if any) is not relayed.
    c.send(b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
    after = c.response()
    assert after is not None and after.status == 200 and after.json()["path"] == "/after", after
    c.close()
    assert [(q.method, q.target, q.body) for q in gw.upstream.requests] == [("POST", "/e", b"hello"), ("GET", "/after", b"")]


def test_expect_with_body_already_sent_gets_no_interim(gw):
    # The body came with the head: no 100 is needed (RFC 9110 §10.1.1 lets the server skip it).
    c = RawClient(gw.port)
    c.send(b"POST /e2 HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello")
    r = c.response()
    assert r is not None and r.status == 200 and r.json()["path"] == "/e2", r
    c.close()
    settle(gw.upstream, 0.05)
    assert [(q.method, q.target, q.body) for q in gw.upstream.requests] == [("POST", "/e2", b"hello")]


def test_unknown_expectation_gets_417(gw):
    reject(gw, b"POST /e HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 5\r\n\r\nhello" + SMUGGLED, 417)


def test_hop_by_hop_and_connection_named_fields_are_not_forwarded(gw):
    recs = accept(gw, b"GET /h HTTP/1.1\r\n" + H + b"Connection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
                  b"Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nX-Kept: 2\r\n\r\n",
                  [("GET", "/h", b"")])
    names = {k.lower() for k, _ in recs[0].headers}
    assert "x-kept" in names
    assert not names & {"connection", "x-secret", "keep-alive", "te", "upgrade", "proxy-connection"}, names


# ---------------------------------------------------------------------------------------------
# The other direction: an upstream response that is not what it claims must not leak into the
# next response (response-queue poisoning) — Sluice must not reuse that upstream connection.


class ScriptedUpstream:
    """Answers the n-th request for /1 or /n (counted over all connections) with script[n] (raw
    bytes), then with `default`. Records (connection, request line) pairs."""

    def __init__(self, script, default):
        self.script, self.default = list(script), default
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.conns = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                cid = self.conns
            threading.Thread(target=self._serve, args=(c, cid), daemon=True).start()

    def _serve(self, c, cid):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = 0
                for ln in head.split(b"\r\n")[1:]:
                    if ln.lower().startswith(b"content-length:"):
                        n = int(ln.split(b":")[1])
                while len(buf) < n:
                    buf += c.recv(65536)
                buf = buf[n:]
                line = head.split(b"\r\n")[0].decode()
                if line.split(" ")[1] not in ("/1", "/n"):
                    c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")  # probes, scrapes
                    continue
                with self.lock:
                    self.seen.append((cid, line))
                    out = self.script.pop(0) if self.script else self.default
                c.sendall(out)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.sock.close()


def ok(body):
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.mark.parametrize("first,first_status", [
    (ok(b"first") + ok(b"POISONED"), 200),                              # more bytes than Content-Length
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n" + ok(b"POISONED"), 502),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nfirst!" + ok(b"POISONED"), 502),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n" + ok(b"POISONED"), 502),
    (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 5\r\n\r\nfirst" + ok(b"POISONED"), 502),   # obs-fold
    (b"HTTP/1.1 200 OK\nContent-Length: 5\n\nfirst" + ok(b"POISONED"), 502),                            # bare LF
], ids=["extra-bytes", "CL+TE", "two-CL", "xchunked", "obs-fold", "bare-LF"])
def test_bad_upstream_response_does_not_poison_the_next_one(sluice, first, first_status):
    up = ScriptedUpstream([first], ok(b"second"))
    try:
        s = sluice(f"""
listen: [{{ address: "127.0.0.1:PORT" }}]
admin: {{ address: "127.0.0.1:ADMIN_PORT" }}
workers: 1
timeouts: {{ drain_delay: 0s }}
health: {{ interval: 0 }}
telemetry: {{ interval: 0 }}
pools: [{{ name: p, endpoints: ["http://127.0.0.1:{up.port}"] }}]
""")
        c = RawClient(s.port)
        c.send(b"GET /1 HTTP/1.1\r\n" + H + b"\r\n")
        r1 = c.response()
        assert r1 is not None and r1.status == first_status, r1
        if first_status == 200:
            assert r1.body == b"first"
        else:
            assert_openai_error(r1, 502)
        # The next requests, on this client connection if it is still open and on a new one,
        # get their own answers: never the bytes the upstream sent after the first response.
        bodies = []
        for _ in range(3):
            if c.eof or r1.header("connection") == ["close"]:
                c.close()
                c = RawClient(s.port)
            c.send(b"GET /n HTTP/1.1\r\n" + H + b"\r\n")
            r = c.response()
            assert r is not None, "connection closed without a response"
            bodies.append(r.body)
        c.close()
        assert bodies == [b"second"] * 3
        # The poisoned upstream connection was not reused: request 2 went on a fresh one.
        assert up.seen[1][0] != up.seen[0][0], up.seen
    finally:
        up.close()


# ---------------------------------------------------------------------------------------------
# Large bodies arriving in pieces. While the rest of a large body is on its way, Sluice asks the
# kernel to report the socket readable only once all of it has arrived (SO_RCVLOWAT). A mark set
# too high, or left set after the body, would stall the connection until a timeout; these cases
# would then fail on time, not on bytes.

BIG = bytes(range(256)) * 1200  # 307,200 bytes, every byte value: forwarded as is (not JSON)


def big_head(path, n=len(BIG)):
    return b"POST " + path + b" HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n" % n


def timed_response(c):
    t = time.monotonic()
    r = c.response()
    return r, time.monotonic() - t


def test_large_body_arriving_in_pieces_is_forwarded_at_once(gw):
    c = RawClient(gw.port)
    pieces = [big_head(b"/big") + BIG[:1000], BIG[1000:101000], BIG[101000:250000], BIG[250000:]]
    for p in pieces[:-1]:
        c.send(p)
        time.sleep(0.15)
    c.send(pieces[-1])
    r, waited = timed_response(c)
    assert r is not None and r.status == 200 and r.json()["path"] == "/big", r
    assert waited < 1.0, f"the response came {waited:.2f} s after the last byte of the body"
    # Keep-alive: a small request sent after a pause must wake the connection at once (the mark
    # is back to one byte).
    time.sleep(0.2)
    c.send(b"GET /after HTTP/1.1\r\n" + H + b"\r\n")
    r, waited = timed_response(c)
    assert r is not None and r.status == 200 and r.json()["path"] == "/after", r
    assert waited < 1.0, f"a small request after a large body waited {waited:.2f} s"
    c.close()
    settle(gw.upstream, 0.05)
    assert [(q.method, q.target, q.body) for q in gw.upstream.requests] == [("POST", "/big", BIG), ("GET", "/after", b"")]


def test_second_large_body_on_the_connection_arrives_in_pieces(gw):
    # The first body complete, the second cut short in the same write, its rest later: the mark
    # is set again for the second request, for what it still lacks.
    c = RawClient(gw.port)
    second = BIG[::-1]
    c.send(big_head(b"/one") + BIG + big_head(b"/two") + second[:5000])
    r, _ = timed_response(c)
    assert r is not None and r.status == 200 and r.json()["path"] == "/one", r
    time.sleep(0.15)
    c.send(second[5000:200000])
    time.sleep(0.15)
    c.send(second[200000:])
    r, waited = timed_response(c)
    assert r is not None and r.status == 200 and r.json()["path"] == "/two", r
    assert waited < 1.0, f"the second response came {waited:.2f} s after its body"
    c.close()
    settle(gw.upstream, 0.05)
    assert [(q.target, q.body) for q in gw.upstream.requests] == [("/one", BIG), ("/two", second)]


def test_large_body_short_of_its_length_times_out(gw):
    # The socket is never reported readable (the rest never comes): the body timeout (2 s here)
    # still answers 408 and closes, and nothing reaches the upstream.
    c = RawClient(gw.port, timeout=5.0)
    t = time.monotonic()
    c.send(big_head(b"/short") + BIG[:50000])
    r = c.response()
    waited = time.monotonic() - t
    assert_openai_error(r, 408)
    assert 1.5 < waited < 4.0, waited
    assert c.closed()
    c.close()
    settle(gw.upstream)
    assert gw.upstream.requests == []


def client_connections(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin}/metrics", timeout=2) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("sluice_client_connections "):
                return float(line.split()[1])
    raise AssertionError("sluice_client_connections is not exported")


def test_client_leaving_mid_body_is_noticed_at_once(gw):
    # A hang-up is reported whatever the mark: the connection is closed long before the body
    # timeout, and nothing reaches the upstream.
    before = client_connections(gw)
    c = RawClient(gw.port)
    c.send(big_head(b"/gone") + BIG[:50000])
    time.sleep(0.2)
    assert client_connections(gw) == before + 1
    c.close()
    deadline = time.monotonic() + 1.0
    while client_connections(gw) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client_connections(gw) == before, "the connection outlived its client by more than 1 s"
    settle(gw.upstream)
    assert gw.upstream.requests == []
