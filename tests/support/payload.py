"""Deterministic payloads for large-body tests.

The echo app's /download?size=N&seed=S streams exactly the bytes of chunks(N, S); a test computes
the expected SHA-256 with sha256_hex(N, S) without holding the payload in memory. The generator
slices one random block at a moving offset, so it runs at memory speed and no two neighbouring
64 KiB chunks are equal (a duplicated, dropped or reordered chunk changes the digest).
"""
import functools
import hashlib
import random

CHUNK = 64 * 1024
_SHIFTS = 251  # a prime: chunk i starts at offset (i * 7) % 251 of the block


@functools.lru_cache(maxsize=8)
def _block(seed):
    return random.Random(f"edgegate-payload:{seed}").randbytes(CHUNK + _SHIFTS)


def chunks(size, seed=0):
    """Yields `size` bytes in chunks of at most 64 KiB."""
    block = _block(str(seed))
    i = 0
    remaining = size
    while remaining > 0:
        n = min(CHUNK, remaining)
        off = (i * 7) % _SHIFTS
        yield block[off:off + n]
        remaining -= n
        i += 1


def sha256_hex(size, seed=0):
    h = hashlib.sha256()
    for c in chunks(size, seed):
        h.update(c)
    return h.hexdigest()


def write_file(path, size, seed=0):
    """Writes the payload to `path` and returns its SHA-256 (hex)."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for c in chunks(size, seed):
            h.update(c)
            f.write(c)
    return h.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            c = f.read(1 << 20)
            if not c:
                return h.hexdigest()
            h.update(c)
