#!/usr/bin/env python3
"""The guard against a strict reference parser (h11), over the same bytes.

  h11_diff.py gen --seed N --count M   random request streams, one JSON line each
  h11_diff.py compare FILE             FILE: JSON lines {"hex", "guard", "hyper"}
                                       as tests/guard_differential.rs writes them

The streams come from a grammar of the pieces request smuggling is made
of: Content-Length and Transfer-Encoding variants, obsolete line folding,
bare CR and LF, chunk extensions and trailers, bodies shorter or longer
than announced, pipelined requests. `compare` reads each stream with h11,
request by request, and sorts every stream into a category (docs/fuzzing.md):

  same            both framed every request identically
  guard-stricter  the guard refused a request h11 accepted (fine)
  both-refuse     h11 and hyper both refuse what the guard let through
                  (hyper answers 400 and closes: fine)
  MISMATCH        a request framed differently, or the guard let through a
                  request that h11 refuses and hyper reads: a failure
"""
import json
import random
import re
import sys

import h11

# -- generation ------------------------------------------------------------
# Mostly well-formed requests with a tricky piece here and there, so that
# streams get past their first request often enough to test pipelining.


# Half the requests are mostly clean (tricky pieces 10x rarer), so that
# streams often get past their first request and pipelining is tested.
MOOD = [1.0]


def pick(r, clean, tricky, p):
    """A clean piece, or with probability p (times the mood) a tricky one."""
    return r.choice(tricky) if r.random() < p * MOOD[0] else r.choice(clean)


def eol(r):
    return pick(r, [b"\r\n"], [b"\n", b"\r", b"\r\r\n", b"\n\r"], 0.02)


def cl_value(r, n):
    n = str(n).encode()
    return pick(r, [n], [b" " + n, n + b" ", b"\t" + n + b"\t", b"+" + n, b"0" + n, n + b", " + n,
                         n + b"," + n, b"-1", b"", b"0x" + n, n + b"a", b"1" * 20, n + b"\x0b"], 0.3)


def te_value(r):
    return pick(r, [b"chunked"], [b"Chunked", b" chunked ", b"gzip, chunked", b"chunked, gzip",
                                  b"chunked, chunked", b"identity", b"chunked;x=1", b"x-chunked",
                                  b"chunked,", b", chunked", b"gzip,chunked", b"chunked\x0b",
                                  b"\"chunked\"", b"CHUNKED", b"chunked\t"], 0.3)


def framing_headers(r, body_len):
    """Header lines deciding the framing, and whether they say chunked."""
    odd = 5 * MOOD[0]
    kind = r.choices(["none", "cl", "te", "both", "cl2", "te2", "fold"], [25, 30, 25, odd, odd, odd, odd])[0]
    if kind == "none":
        return [], False
    if kind == "cl":
        name = pick(r, [b"Content-Length", b"content-length"], [b"Content-Length ", b"Content_Length"], 0.1)
        return [name + b":" + pick(r, [b" "], [b"", b"\t", b"  "], 0.3) + cl_value(r, body_len)], False
    if kind == "cl2":
        return [b"Content-Length: %d" % body_len, b"Content-Length: %d" % r.choice([body_len, body_len + 1])], False
    if kind == "te":
        name = pick(r, [b"Transfer-Encoding", b"transfer-encoding"], [b"Transfer-Encoding ", b"Transfer_Encoding"], 0.1)
        return [name + b": " + te_value(r)], True
    if kind == "te2":
        return [b"Transfer-Encoding: " + r.choice([b"gzip", b"chunked", b""]), b"Transfer-Encoding: " + te_value(r)], True
    if kind == "fold":
        return [r.choice([b"Content-Length: %d" % body_len, b"Transfer-Encoding: chunked", b"X-A: b"]),
                r.choice([b" chunked", b"\tx", b" 5"])], r.random() < 0.5
    lines = [b"Content-Length: " + cl_value(r, body_len), b"Transfer-Encoding: " + te_value(r)]
    r.shuffle(lines)
    return lines, True


def other_headers(r):
    clean = [b"Connection: keep-alive", b"Upgrade: websocket", b"Connection: Upgrade", b"X-A: b", b"X-A:b",
             b"Expect: 100-continue", b"X-A:   spaced   ", b"Trailer: t", b"A" * 70 + b": long", b"Connection: close"]
    tricky = [b"X Y: z", b": empty", b"X:", b"X-\xc3\xa4: b", b"X-A: a\x00b", b"X-A: \x80\xff", b"Host: y"]
    return [pick(r, clean, tricky, 0.1) for _ in range(r.randint(0, 3))]


def chunked_body(r, data):
    out = b""
    while data:
        n = min(len(data), r.randint(1, 40))
        size = pick(r, [b"%x" % n], [b"%X" % n, b"000%x" % n, b"%x " % n, b"%x;ext=1" % n, b"%x;" % n,
                                     b"%x;a=\"b\"" % n, b" %x" % n, b"0x%x" % n, b"%x\t" % n], 0.3)
        out += size + eol(r) + data[:n] + pick(r, [b"\r\n"], [b"", b"\n", b"XX"], 0.05)
        data = data[n:]
    out += pick(r, [b"0"], [b"00", b"0;x=y", b"0 "], 0.2) + eol(r)
    if r.random() < 0.2:
        out += pick(r, [b"T: 1", b"T:1\r\nU: 2"], [b"T", b"T : 1", b": 1", b"T: \x01"], 0.5) + eol(r)
    if r.random() < 0.2 * MOOD[0]:
        out += r.choice([b"T: 1", b"T:1\r\nU: 2", b"Content-Length: 9", b" folded"]) + eol(r)
    return out + eol(r)


def request(r):
    MOOD[0] = r.choice([0.1, 1.0])
    body = bytes(r.choice(b"abc\r\n0") for _ in range(r.choice([0, 0, 1, 5, 17, 40])))
    framing, chunked = framing_headers(r, len(body))
    headers = [b"Host: x"] + other_headers(r) + framing
    r.shuffle(headers)
    line = pick(r, [b"GET", b"POST", b"PUT"], [b"CONNECT", b"G\x00T", b"OPTIONS"], 0.05) \
        + pick(r, [b" "], [b"  ", b"\t"], 0.03) + r.choice([b"/", b"/a?b", b"http://x/y"]) + b" " \
        + pick(r, [b"HTTP/1.1"], [b"HTTP/1.0", b"HTTP/1.0", b"HTTP/1.2", b"http/1.1", b"HTTP/2.0", b"HTTP/1.1 "], 0.08)
    out = line + eol(r) + b"".join(h + eol(r) for h in headers) + eol(r)
    if chunked:
        out += chunked_body(r, body)
    else:
        # Sometimes fewer or more bytes than announced.
        out += body[: pick(r, [len(body)], [max(0, len(body) - 3)], 0.1)] + pick(r, [b""], [b"xx"], 0.1)
    return out


def stream(r):
    parts = []
    for _ in range(r.randint(1, 5)):
        if r.random() < 0.1:
            parts.append(b"\r\n")
        parts.append(request(r))
    data = b"".join(parts)
    if r.random() < 0.1:
        data = data[: r.randint(0, len(data))]
    return data


def gen(seed, count):
    r = random.Random(seed)
    for i in range(count):
        print(json.dumps({"id": i, "hex": stream(r).hex()}))


# -- h11's reading -----------------------------------------------------------

def h11_reading(data):
    """Requests as h11 frames them, one fresh connection per request (h11
    keeps no state between them that matters here); the outcome after the
    last: 'end', 'partial', 'closed' (h11 would close) or an error."""
    requests, pos = [], 0
    while True:
        # RFC 9112 section 2.2: a server SHOULD ignore empty lines before a
        # request line; h11 refuses them, the guard and hyper skip them.
        while data.startswith(b"\r\n", pos):
            pos += 2
        if pos >= len(data):
            return requests, "end"
        conn = h11.Connection(h11.SERVER)
        rest = data[pos:]
        conn.receive_data(rest)
        req = {"body": 0}
        while True:
            try:
                ev = conn.next_event()
            except h11.RemoteProtocolError as e:
                return requests, "error: " + str(e)
            used = pos + len(rest) - len(conn.trailing_data[0])
            if ev is h11.NEED_DATA:
                return requests, "partial"
            if isinstance(ev, h11.Request):
                req["head_end"] = used
            elif isinstance(ev, h11.Data):
                req["body"] += len(ev.data)
            elif isinstance(ev, h11.EndOfMessage):
                req["end"] = used
                requests.append(req)
                pos = used
                if conn.their_state is h11.MUST_CLOSE:
                    return requests, "closed"
                break


# -- comparison --------------------------------------------------------------

def classify(rec):
    data = bytes.fromhex(rec["hex"])
    g, hyper = rec["guard"], rec["hyper"]
    hs, outcome = h11_reading(data)
    for i, h in enumerate(hs):
        if i >= len(g["requests"]):
            if g["refused"]:
                return "guard-stricter", g["refused"]["reason"]
            return "MISMATCH", f"request {i}: h11 ends it at {h['end']}, the guard waits for more"
        gr = g["requests"][i]
        mine = (gr["head_end"], gr["end"], gr["body"])
        theirs = (h["head_end"], h["end"], h["body"])
        if mine != theirs:
            return "MISMATCH", f"request {i}: guard (head_end, end, body) {mine}, h11 {theirs}"
    k = len(hs)
    if outcome.startswith("error") and k < len(g["requests"]):
        if not hyper[k]:
            return "both-refuse", outcome
        if "Host" in outcome:
            # Not framing: hpgate's host.rs answers 400 after hyper parsed it.
            return "both-refuse", outcome + " (hpgate: host.rs)"
        return "MISMATCH", f"request {k}: the guard and hyper read it, h11 refuses ({outcome})"
    if outcome == "partial" and k < len(g["requests"]):
        return "MISMATCH", f"request {k}: the guard ends it at {g['requests'][k]['end']}, h11 waits for more"
    if outcome.startswith("error") and g["refused"]:
        return "same", "both refuse"
    if outcome.startswith("error"):
        return "same", "h11 refuses a request the guard has not finished either"
    if g["refused"] and outcome == "partial":
        return "guard-stricter", g["refused"]["reason"] + " (before h11 saw the whole request)"
    if g["refused"] and outcome != "closed":
        return "guard-stricter", g["refused"]["reason"]
    return "same", outcome


def compare(path):
    counts, examples, failed = {}, {}, 0
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            cat, why = classify(rec)
            key = (cat, re.sub(r"bytearray\(.*\)|b'.*'", "...", why) if cat != "MISMATCH" else "")
            counts[key] = counts.get(key, 0) + 1
            if cat == "MISMATCH":
                failed += 1
                if failed <= 10:
                    print(f"MISMATCH {why}\n  stream: {bytes.fromhex(rec['hex'])!r}")
            examples.setdefault(key, rec["hex"])
    for (cat, why), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[1])):
        print(f"{n:6d}  {cat:15s} {why}")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["gen"]:
        args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
        gen(int(args.get("--seed", "1")), int(args.get("--count", "1000")))
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(sys.argv[2]))
    else:
        sys.exit(__doc__)
