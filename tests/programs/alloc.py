#!/usr/bin/env python3
"""Allocation-heavy workload for tests/programs.sh.

Builds, sorts, slices and throws away many dicts, lists, strings, bytes and
sets, round-trips them through json, and prints a few summaries and a
checksum. The output depends only on the code below (no hashing of str keys
leaks into it, no time, no addresses), so a run under the labyrinth preload
must print exactly what a plain run prints.
"""

import hashlib
import json
import sys
import zlib


class Lcg(object):
    """Small deterministic pseudo-random generator (64-bit LCG)."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return self.state >> 33

    def below(self, n):
        return self.next() % n


ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_"


def word(rng, lo, hi):
    n = lo + rng.below(hi - lo + 1)
    return "".join(ALPHABET[rng.below(len(ALPHABET))] for _ in range(n))


def records(rng, count):
    out = []
    for i in range(count):
        rec = {
            "id": i,
            "name": word(rng, 3, 24),
            "score": rng.below(1000000) / 7.0,
            "tags": [word(rng, 1, 8) for _ in range(rng.below(6))],
            "nested": {"a": rng.below(100), "b": [rng.below(10) for _ in range(rng.below(12))]},
        }
        if rng.below(4) == 0:
            rec["blob"] = word(rng, 100, 600)
        out.append(rec)
    return out


def main():
    rng = Lcg(20240601)
    digest = hashlib.sha256()

    # 1. Many small dicts, sorted several ways, json round trip.
    recs = records(rng, 25000)
    by_name = sorted(recs, key=lambda r: (r["name"], r["id"]))
    by_score = sorted(recs, key=lambda r: (-r["score"], r["id"]))
    text = json.dumps(recs, sort_keys=True)
    back = json.loads(text)
    assert back == recs, "json round trip changed the records"
    digest.update(text.encode("utf-8"))
    print("records: %d json_bytes: %d first: %s last: %s top: %d" % (
        len(back), len(text), by_name[0]["name"], by_name[-1]["name"], by_score[0]["id"]))
    del by_name, by_score, back

    # 2. A word index: dict of lists, grown and shrunk.
    index = {}
    for r in recs:
        for t in r["tags"]:
            index.setdefault(t, []).append(r["id"])
    biggest = sorted(index.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:5]
    for tag, ids in biggest:
        print("tag %-8s %5d ids, sum %d" % (tag, len(ids), sum(ids)))
    for tag in sorted(index):
        if len(index[tag]) < 3:
            del index[tag]
    print("tags kept: %d" % len(index))
    del recs

    # 3. String building: joins, concatenation, replace, split, encode.
    parts = []
    for i in range(60000):
        parts.append("%06d:%s" % (i, word(rng, 0, 40)))
    big = "|".join(parts)
    big2 = big.replace("a", "AAAA").replace("|", "\n")
    lines = big2.split("\n")
    lines.sort(key=lambda s: (len(s), s))
    acc = ""
    for s in lines[:3000]:
        acc += s[::-1]
    raw = big2.encode("utf-8")
    packed = zlib.compress(raw, 6)
    assert zlib.decompress(packed) == raw
    digest.update(acc.encode("utf-8"))
    print("strings: %d chars, %d lines, shortest %r, longest %d, acc %d" % (
        len(big2), len(lines), lines[0], len(lines[-1]), len(acc)))
    del parts, big, big2, lines, acc, raw, packed

    # 4. Sets, tuples and bytearrays with heavy churn.
    s = set()
    for i in range(200000):
        k = rng.below(50000)
        if k in s:
            s.discard(k)
        else:
            s.add(k)
    print("set size %d, sum %d" % (len(s), sum(s)))
    buf = bytearray()
    for i in range(20000):
        chunk = bytes((i + j) & 0xFF for j in range(rng.below(64)))
        buf += chunk
        if len(buf) > 200000:
            del buf[: len(buf) // 3]
    digest.update(bytes(buf))
    print("bytearray %d" % len(buf))

    # 5. Lists of lists, growing and shrinking in waves (realloc-heavy).
    grid = []
    for wave in range(6):
        for i in range(3000):
            grid.append([i * wave] * (rng.below(200) + 1))
        grid = grid[len(grid) // 2:]
    total = 0
    for row in grid:
        total += sum(row) + len(row)
    print("grid rows %d total %d" % (len(grid), total))

    # 6. Big integers and a few large blocks.
    f = 1
    for i in range(2, 3000):
        f *= i
    fs = "%x" % f
    digest.update(fs.encode("ascii"))
    blocks = [bytes([i]) * (1 << (10 + i % 11)) for i in range(64)]
    print("factorial hex digits %d, blocks %d bytes" % (len(fs), sum(len(b) for b in blocks)))

    print("checksum %s" % digest.hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
