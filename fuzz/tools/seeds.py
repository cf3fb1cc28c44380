#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from the
project's test vectors: the byte strings in the guard's and app_io's
tests, the RFC 6455/7692 examples the frame and deflate unit tests use,
and every web.config fixture. Run from the repository root; the output
is committed, so this only needs re-running when the vectors change."""
import ast
import hashlib
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "fuzz" / "seeds"

# A Rust byte-string literal b"..." (not raw), possibly with escapes.
BYTES = re.compile(rb'(?<![A-Za-z0-9_])b"((?:[^"\\]|\\.)*)"', re.S)


def rust_bytes(path):
    """Every b"..." literal in a Rust file, decoded."""
    out = []
    for m in BYTES.finditer(path.read_bytes()):
        body = re.sub(rb"\\\n\s*", b"", m.group(1))  # line continuations
        try:
            out.append(ast.literal_eval("b'" + body.decode().replace("'", "\\'") + "'"))
        except (ValueError, SyntaxError, UnicodeDecodeError):
            pass
    return out


def write(target, items):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    for item in items:
        name = hashlib.sha1(item).hexdigest()[:16]
        (d / name).write_bytes(item)
    print(f"{target}: {len(set(items))} seeds")


def guard():
    found = rust_bytes(ROOT / "tests/guard.rs") + rust_bytes(ROOT / "src/proxy/guard/scanner.rs")
    heads = [b for b in found if b" HTTP/1." in b or b"\r\n" in b]
    # Pipelined pairs of vectors: a refusal after good requests.
    pairs = [heads[i] + heads[(i * 7 + 3) % len(heads)] for i in range(len(heads))]
    return heads + pairs


def websocket_frame():
    return [
        bytes([0x81, 0x05]) + b"Hello",
        bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
        bytes([0x01, 0x03]) + b"Hel" + bytes([0x80, 0x02]) + b"lo",
        bytes([0x89, 0x05]) + b"Hello",
        bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58]),
        bytes([0x82, 0x7E, 0x01, 0x00]) + bytes(256),
        bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]) + bytes(16),
        bytes([0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2]),
        bytes([0xC1, 0x07, 0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00]),
    ]


def ws(op, payload, key=None, fin=True, rsv=0):
    """One WebSocket frame; masked with `key` (client to app) if given."""
    b0 = (0x80 if fin else 0) | rsv | op
    n = len(payload)
    size = bytes([n]) if n < 126 else (bytes([126]) + n.to_bytes(2, "big") if n < 65536 else bytes([127]) + n.to_bytes(8, "big"))
    if key is None:
        return bytes([b0]) + size + payload
    masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return bytes([b0, size[0] | 0x80]) + size[1:] + bytes(key) + masked


def websocket_relay():
    """A control byte (side, mode), three cut points, then a frame stream:
    each stream from the client (masked) and from the app (plain), in
    every mode, cut in a few places."""
    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    def streams(key):
        return [
            ws(1, b"Hello", key) + ws(2, bytes(300), key),
            ws(1, b"Hel", key, fin=False) + ws(9, b"ping", key) + ws(0, b"lo", key),
            ws(1, b"one", key) + ws(8, b"\x03\xe8bye", key) + ws(1, b"after", key),
            ws(8, b"\x03\xe8", key) + ws(3, b"reserved", key),
            ws(1, b"ok", key) + ws(1, b"no mask", None if key else [1, 2, 3, 4]),
            ws(1, hello, key, rsv=0x40) + ws(1, b"x" * 2000, key),
            ws(0, b"no message", key) + ws(1, b"a", key, fin=False) + ws(2, b"b", key),
            ws(9, b"p" * 126, key)[:60],
        ]
    items = []
    for side, key in [(0, [0x37, 0xFA, 0x21, 0x3D]), (1, None)]:
        for mode in range(4):
            for i, stream in enumerate(streams(key)):
                cuts = bytes([3, 9 + i, 40 + 5 * i])
                items.append(bytes([side | mode << 1]) + cuts + stream)
    return items


def deflate():
    hello = bytes([0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00])
    stored = bytes([0x00, 0x05, 0x00, 0xFA, 0xFF]) + b"Hello" + bytes([0x00])
    text = b"the same words again and again and again" * 4
    return [
        b"\x00Hello",
        b"\x01" + text + b"\xfe" + text,
        b"\x10" + text + b"\xfe\xfe" + bytes(range(256)),
        b"\x9e" + b"abcdefghij" * 50,
        b"\xff" + hello + b"\xfd" + stored + b"\xfd" + hello,
        b"\x40" + hello + b"\xfd" + b"\xff\xff\xff",
    ]


def web_config():
    files = sorted((ROOT / "fixtures").rglob("*web.config"))
    items = [f.read_bytes() for f in files if f.is_file()]
    for rs in ["tests/config_fuzz.rs", "tests/config_cli.rs"]:
        for m in re.finditer(r'"(<\?xml[^"\\]*(?:\\.[^"\\]*)*|<configuration[^"\\]*(?:\\.[^"\\]*)*)"',
                             (ROOT / rs).read_text()):
            try:
                items.append(ast.literal_eval('"' + m.group(1) + '"').encode())
            except (ValueError, SyntaxError):
                pass
    return items


def app_heads():
    found = rust_bytes(ROOT / "src/proxy/app_io.rs")
    return [b for b in found if b.startswith((b"HTTP", b"\r\nHTTP", b"\nHTTP"))] + [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x00",
    ]


def app_chunked():
    """Three cut points, then a chunked body: the decoder's unit-test
    vectors, each followed by the next response as a kept connection
    would have it."""
    found = rust_bytes(ROOT / "src/proxy/lean/chunked.rs")
    bodies = [b for b in found if b"\r\n" in b]
    return [bytes([1, 4 + i % 7, 20 + i]) + b + b"HTTP/1.1 200 OK\r\n\r\n" for i, b in enumerate(bodies)]


def app_fields():
    """A flag byte (bit 0: leave the Content-Length line out), then a
    response head: the lean path's head and passed-lines test vectors."""
    found = rust_bytes(ROOT / "src/proxy/lean/head.rs") + rust_bytes(ROOT / "src/proxy/lean/passed.rs")
    heads = [b for b in found if b.startswith(b"HTTP/1.")] + [
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 27 Nov 2026 21:00:00 GMT\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: t=5\r\n"
        b"Proxy-Thing: 1\r\nUpgrade: h2c\r\nTE: x\r\nTrailer: y\r\nX-Kept:  a b \r\n\r\n",
    ]
    return [bytes([i % 2]) + h for i, h in enumerate(heads)]


def app_framing():
    """A flag byte (bit 0: the request was HEAD), then a response head:
    the lean path's vectors, and each framing in HTTP/1.0 and 1.1."""
    heads = [h[1:] for h in app_fields()] + [
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked,\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nConnection: keep-alive, close\r\n\r\n",
        b"HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n",
    ]
    return [bytes([i % 2]) + h for i, h in enumerate(heads)]


if __name__ == "__main__":
    for fn in [guard, websocket_frame, websocket_relay, deflate, web_config, app_heads, app_chunked, app_fields, app_framing]:
        write(fn.__name__, fn())
