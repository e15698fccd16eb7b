#!/usr/bin/env python3
"""Deterministic upload tree for scripts/bench-media (issue 8).

  bench-media-tree.py generate ROOT FILES GIB SEED   writes the tree, prints a summary line
  bench-media-tree.py change ROOT PERCENT SEED       rewrites PERCENT % of the files <= 16 MiB (same size, new content)

The tree looks like a web application's upload directory: mostly small incompressible files
(thumbnails, avatars: 1-64 KiB), some 0.5-5 MiB images, text/JSON/CSV/SVG (compressible),
a few 50-200 MiB videos, nested directories, and some odd names (spaces, unicode, quotes, a
leading dash, very long, not UTF-8). Sizes are drawn, then scaled so the total is GIB. Binary
content is AES-CTR keystream (unique per file and per rewrite, so nothing dedups by accident);
text is random words from a fixed vocabulary in JSON/CSV shapes (compresses about 3-5x).
"""
import hashlib
import os
import random
import sys

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

KIB, MIB = 1 << 10, 1 << 20
BLOCK = 8 * MIB
ODD = ["with space", "café ünïcode 日本語", "quote'd \"double\"", "-leading-dash", "#hash %20 & semi;colon",
       "emoji 📷", "x" * 200, "trailing space ", "tab\tinside"]
TEXT_EXT = ["json", "txt", "csv", "html", "svg", "xml", "md"]
SMALL_EXT = ["jpg"] * 6 + ["webp"] * 2 + ["png", "gif", "bin", "dat"]


def keystream(seed, nonce, size, out):
    key = hashlib.sha256(f"bench-media {seed}".encode()).digest()[:16]
    # The file number goes in the upper half of the counter block: files must not share keystream.
    enc = Cipher(algorithms.AES(key), modes.CTR((nonce << 64).to_bytes(16, "big"))).encryptor()
    zero = bytes(min(size, BLOCK))
    while size > 0:
        n = min(size, BLOCK)
        out.write(enc.update(zero[:n]))
        size -= n


def words(rng):
    vocab = [hashlib.md5(str(i).encode()).hexdigest()[: 3 + i % 8] for i in range(3000)]
    common = ["the", "user", "image", "upload", "id", "name", "status", "created_at", "true", "null"]
    return vocab + common * 50


def text(rng, vocab, ext, size):
    parts, n = [], 0
    while n < size:
        if ext == "json":
            s = '{"id": %d, "user": "%s", "title": "%s", "tags": ["%s", "%s"], "score": %.3f, "active": %s},\n' % (
                rng.randrange(10**7), rng.choice(vocab), " ".join(rng.choices(vocab, k=6)), rng.choice(vocab),
                rng.choice(vocab), rng.random() * 100, rng.choice(["true", "false"]))
        elif ext == "csv":
            s = "%d,%s,%s,%d,%s\n" % (rng.randrange(10**6), rng.choice(vocab), rng.choice(vocab),
                                     rng.randrange(1000), "2026-0%d-1%d" % (rng.randrange(1, 10), rng.randrange(10)))
        else:
            s = " ".join(rng.choices(vocab, k=12)) + ".\n"
        parts.append(s)
        n += len(s)
    return "".join(parts).encode()[:size]


def loguniform(rng, lo, hi):
    return int(lo * (hi / lo) ** rng.random())


def plan(files, gib, seed):
    """[(relative path bytes, kind, size)] in a fixed order."""
    rng = random.Random(seed)
    n_video = max(1, round(files * 3 / 100_000))
    n_image = max(1, round(files * 0.002))
    n_text = max(1, files // 10)
    n_small = max(0, files - n_video - n_image - n_text)
    items = []
    for i in range(n_video):
        items.append((f"videos/{2020 + i % 6}/clip-{i:03d}.{rng.choice(['mp4', 'mov'])}", "bin",
                      rng.randint(50 * MIB, 200 * MIB)))
    for i in range(n_image):
        items.append((f"uploads/posts/{2019 + i % 7}/{1 + i % 12:02d}/IMG_{rng.randrange(10**6):06d}_{i}.jpg",
                      "bin", loguniform(rng, MIB // 2, 5 * MIB)))
    for i in range(n_text):
        ext = rng.choice(TEXT_EXT)
        items.append((f"documents/team-{i % 37}/{rng.choice(['reports', 'exports', 'pages'])}/doc-{i}.{ext}",
                      "text", loguniform(rng, KIB, 64 * KIB)))
    for i in range(n_small):
        ext = rng.choice(SMALL_EXT)
        h = hashlib.md5(f"{seed}/{i}".encode()).hexdigest()
        if i % 3 == 0:
            path = f"uploads/avatars/{i % 997:03d}/{h[:20]}.{ext}"
        elif i % 3 == 1:
            path = f"uploads/thumbs/{h[:2]}/{h[2:4]}/{h[4:30]}_thumb.{ext}"
        else:
            path = f"storage/app/public/{h[:1]}/{h[1:3]}/u{i}/{h[3:19]}.{ext}"
        items.append((path, "bin", loguniform(rng, KIB, 64 * KIB)))
    # Odd names replace some plain ones (same size and kind).
    for j, i in enumerate(range(7, len(items), max(1, len(items) // 60))):
        path, kind, size = items[i]
        d, _, base = path.rpartition("/")
        items[i] = (f"{d}/{ODD[j % len(ODD)]} {j}.{base.rsplit('.', 1)[-1]}", kind, size)
    out = [(p.encode(), k, s) for p, k, s in items]
    for j in range(2):  # legacy uploads with names that are not UTF-8
        p, k, s = out[-1 - j]
        out[-1 - j] = (p.rsplit(b"/", 1)[0] + b"/latin1-\xe9t\xe9-%d.jpg" % j, k, s)
    total = sum(s for _, _, s in out)
    scale = gib * (1 << 30) / total
    return [(p, k, max(1, int(s * scale))) for p, k, s in out]


def write(root, rel, kind, size, seed, nonce, vocab, rng):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        if kind == "bin":
            keystream(seed, nonce, size, f)
        else:
            f.write(text(rng, vocab, rel.rsplit(b".", 1)[-1].decode(), size))


def generate(root, files, gib, seed):
    root = os.fsencode(root)
    rng = random.Random(seed + 1)
    vocab = words(rng)
    items = plan(files, gib, seed)
    for n, (rel, kind, size) in enumerate(items):
        write(root, rel, kind, size, seed, n, vocab, rng)
        t = 1_700_000_000 + rng.randrange(200_000_000)
        os.utime(os.path.join(root, rel), (t, t))
    os.makedirs(os.path.join(root, b"uploads/empty/dir"), exist_ok=True)
    os.symlink(b"../uploads/avatars", os.path.join(root, b"storage/avatars-link"))
    total = sum(s for _, _, s in items)
    kinds = {}
    for _, k, s in items:
        kinds[k] = kinds.get(k, 0) + s
    print(f"{len(items)} files, {total / MIB:.0f} MiB ({kinds.get('text', 0) / MIB:.0f} MiB text), "
          f"{sum(1 for _, _, s in items if s <= 64 * KIB)} files <= 64 KiB, largest {max(s for _, _, s in items) / MIB:.0f} MiB")


def change(root, percent, seed):
    """Rewrites PERCENT % of the files up to 16 MiB (videos left alone: one 170 MiB video more or
    less would swing the incremental figures between runs more than the tools differ)."""
    root = os.fsencode(root)
    paths = []
    for d, dirs, names in os.walk(root):
        dirs.sort()
        paths += [os.path.join(d, n) for n in sorted(names) if not os.path.islink(os.path.join(d, n))
                  and os.path.getsize(os.path.join(d, n)) <= 16 * MIB]
    rng = random.Random(seed)
    vocab = words(rng)
    chosen = rng.sample(paths, max(1, round(len(paths) * percent / 100)))
    changed = 0
    for n, path in enumerate(chosen):
        size = os.path.getsize(path)
        rel = os.path.relpath(path, root)
        kind = "text" if rel.rsplit(b".", 1)[-1].decode(errors="replace") in TEXT_EXT else "bin"
        write(root, rel, kind, size, seed, 10**9 + n, vocab, rng)
        changed += size
    print(f"{len(chosen)} files, {changed / MIB:.1f} MiB rewritten")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "generate":
        generate(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    elif cmd == "change":
        change(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
