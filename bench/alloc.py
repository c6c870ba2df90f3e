"""Allocation-heavy Python for the labyrinth benchmark (bench/run.sh).

Builds and tears down dicts, lists, tuples and strings of many sizes, the way
an interpreter-bound program does. CPython serves small objects from its own
pools and goes to malloc for larger ones (list and dict tables, long strings,
its arenas), so this measures the allocator under a real program's mix
rather than a synthetic one. Run with PYTHONMALLOC=malloc to send every
object to malloc.

Usage: python3 alloc.py [ROUNDS]   (default 6)
"""
import random
import sys


def records(rng, n):
    """A list of small dicts with string values, like parsed JSON rows."""
    out = []
    for i in range(n):
        out.append({
            "id": i,
            "name": "user%d" % rng.randrange(100000),
            "tags": [("t%d" % rng.randrange(50)) for _ in range(rng.randrange(6))],
            "score": rng.random(),
        })
    return out


def index(rows):
    """Group rows by tag into a dict of lists: many growing containers."""
    by_tag = {}
    for r in rows:
        for t in r["tags"]:
            by_tag.setdefault(t, []).append(r["id"])
    return by_tag


def text(rng, n):
    """Build, split and rejoin strings of varied lengths."""
    words = ["".join(chr(97 + rng.randrange(26)) for _ in range(rng.randrange(1, 12)))
             for _ in range(2000)]
    lines = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 40)))
             for _ in range(n)]
    blob = "\n".join(lines)
    counts = {}
    for w in blob.split():
        counts[w] = counts.get(w, 0) + 1
    return len(blob) + len(counts)


def churn(rng, rows):
    """Drop a random half, then rebuild it: frees scattered over the heap."""
    keep = [r for r in rows if rng.random() < 0.5]
    keep.sort(key=lambda r: (r["score"], r["name"]))
    return keep + records(rng, len(rows) - len(keep))


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    rng = random.Random(1)
    total = 0
    rows = records(rng, 20000)
    for _ in range(rounds):
        rows = churn(rng, rows)
        total += sum(len(v) for v in index(rows).values())
        total += text(rng, 3000)
    print(total)


if __name__ == "__main__":
    main()
