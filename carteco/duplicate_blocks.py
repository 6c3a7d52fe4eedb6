"""Candidate pairs of the whole registry by name and place, vectorised (numpy).

A pair of structures is a candidate when their points are at most `radius` metres apart
(Lambert-93) and their normalised names (`name_key`) share a *key* of a discriminating word.
Words shared by a large share of the registry ("epicerie", "solidaire", "jardin"…) are not
keys: in a dense town centre they would pair every épicerie with every other. A name keeps
its rarest words (a name made only of common words keeps them all), and each word gives
keys that a single typo cannot all change:

- a word of at most 9 letters: itself and every form with one letter removed (a letter
  replaced, dropped, added or two swapped leave one of these forms in common);
- a word of at least 8 letters: its first four and its last four letters (one typo
  changes at most one of the two at that length).

The place is four Lambert-93 grids of cells twice the radius, shifted by half a cell: two
points closer than the radius share a cell in at least one grid. A (key, cell) bucket is a
hash; pairs are the members of one bucket, found by sorting — no join, no index probe.
The exact distance is checked at the end; names are compared later, on the pairs only.

The registry is read by one query returning two buffers (points in binary, name keys as
text): a million structures are two buffers, never a million Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

RARE_SHARE = 0.001  # a word held by more than this share of the names is not a key…
RARE_MIN = 50  # …nor by more than this many (a small registry keeps every word)
MAX_WORDS = 3  # rarest words of a name that give keys
SHORT_WORD = 9  # words up to this length give their one-letter-removed forms
LONG_WORD = 8  # words from this length give their first and last four letters

_U64 = np.uint64
_BASE = 37  # letters and digits are 1..36 in a word's number; 0 pads

# One byte → its digit (1..36) in a word's number; other bytes are not in a name key.
_DIGIT = np.zeros(256, np.int64)
for _i, _c in enumerate(b"abcdefghijklmnopqrstuvwxyz0123456789"):
    _DIGIT[_c] = _i + 1

# One row, two buffers in the same row order: (id, x, y) as big-endian int8/float8 (NaN
# without a point) and the name keys, one a line — never a Python object per structure.
_READ = sa.text(
    """
    SELECT string_agg(int8send(id) || float8send(coalesce(ST_X(geom_l93), 'NaN'))
                      || float8send(coalesce(ST_Y(geom_l93), 'NaN')), ''::bytea),
           string_agg(coalesce(name_key, ''), E'\\n')
      FROM structures
     WHERE status <> 'hidden'
    """
)
_ROW = np.dtype([("id", ">i8"), ("x", ">f8"), ("y", ">f8")])


@dataclass
class Registry:
    """The structures to compare: ids, Lambert-93 points (NaN without one), name keys."""

    ids: NDArray[np.int64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    names: bytes  # name keys, one a line, in the order of `ids`


def read_registry(conn: Connection) -> Registry:
    """Every visible structure's id, Lambert-93 point and name key (one query, two buffers)."""
    points, names = conn.execute(_READ).one()
    rows = np.frombuffer(points or b"", _ROW)
    return Registry(
        rows["id"].astype(np.int64),
        rows["x"].astype(np.float64),
        rows["y"].astype(np.float64),
        (names or "").encode(),
    )


def _mix(h: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """splitmix64's finaliser: spreads every input bit over the 64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> _U64(27))) * _U64(0x94D049BB133111EB)
    return h ^ (h >> _U64(31))


def _number(digits: NDArray[np.int64]) -> NDArray[np.int64]:
    """Base-37 number of rows of digits (up to 12 columns: exact in 63 bits)."""
    powers = _BASE ** np.arange(digits.shape[1] - 1, -1, -1, dtype=np.int64)
    return digits @ powers


def _runs(start: NDArray[np.int64], length: NDArray[np.int64]) -> NDArray[np.int64]:
    """The indices start[i] … start[i] + length[i] - 1, for every i, concatenated."""
    total = int(length.sum())
    first = np.repeat(np.cumsum(length) - length, length)
    return np.repeat(start, length) + (np.arange(total, dtype=np.int64) - first)


def _words(names: bytes) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Each word of the name keys: its row, start (byte offset) and length."""
    buf = np.frombuffer(names, np.uint8)
    sep = (buf == 32) | (buf == 10)
    edges = np.flatnonzero(np.diff(np.r_[True, sep, True].astype(np.int8)))
    start, end = edges[0::2], edges[1::2]
    row = np.cumsum(buf == 10)[start] if len(start) else start
    return row.astype(np.int64), start.astype(np.int64), (end - start).astype(np.int64)


def _chars(buf: NDArray[np.uint8], start: NDArray[np.int64], width: int) -> NDArray[np.int64]:
    """Digits of `width` bytes from each start (the caller masks those past a word's end)."""
    idx = np.minimum(start[:, None] + np.arange(width), len(buf) - 1)
    return _DIGIT[buf[idx]]


def _word_codes(
    buf: NDArray[np.uint8], start: NDArray[np.int64], length: NDArray[np.int64]
) -> NDArray[np.int64]:
    """A number per word: exact up to 12 letters, a 62-bit hash of longer ones."""
    digits = _chars(buf, start, 12)
    digits[np.arange(12) >= length[:, None]] = 0
    code = _number(digits)
    long = length > 12
    if long.any():
        tail = _number(_chars(buf, start[long] + length[long] - 4, 4))
        mixed = _mix(code[long].astype(_U64) ^ _mix((tail * 64 + length[long]).astype(_U64)))
        code[long] = (mixed >> _U64(2)).astype(np.int64) | (1 << 61)
    return code


def _word_keys(
    buf: NDArray[np.uint8], start: NDArray[np.int64], length: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """Keys of distinct words (one occurrence each): (word index, key), see the module doc."""
    owner: list[NDArray[np.int64]] = []
    keys: list[NDArray[np.uint64]] = []
    index = np.arange(len(start), dtype=np.int64)
    short = length <= SHORT_WORD
    if short.any():
        w = SHORT_WORD
        digits = _chars(buf, start[short], w)
        digits[np.arange(w) >= length[short][:, None]] = 0
        owner.append(index[short])
        keys.append(_number(digits).astype(_U64))
        for i in range(w):
            cut = length[short] > i
            dropped = np.concatenate(
                [
                    digits[cut][:, :i],
                    digits[cut][:, i + 1 :],
                    np.zeros((int(cut.sum()), 1), np.int64),
                ],
                axis=1,
            )
            owner.append(index[short][cut])
            keys.append(_number(dropped).astype(_U64))
    long = length >= LONG_WORD
    if long.any():
        tag = _U64(1 << 60)
        owner += [index[long], index[long]]
        keys.append(_number(_chars(buf, start[long], 4)).astype(_U64) | tag)
        keys.append(
            _number(_chars(buf, start[long] + length[long] - 4, 4)).astype(_U64) | tag << _U64(1)
        )
    return np.concatenate(owner), np.concatenate(keys)


def name_grid_pairs(
    reg: Registry,
    radius: float,
    rare_share: float = RARE_SHARE,
    max_words: int = MAX_WORDS,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Row pairs (i < j) at most `radius` metres apart sharing a key of a rare word."""
    n = len(reg.ids)
    none = np.zeros(0, np.int64)
    if n < 2:
        return none, none
    buf = np.frombuffer(reg.names, np.uint8)
    row, start, length = _words(reg.names)
    placed = np.isfinite(reg.x) & np.isfinite(reg.y)
    keep = (length > 1) & placed[row]
    row, start, length = row[keep], start[keep], length[keep]
    code = _word_codes(buf, start, length)
    distinct, first, word, count = np.unique(
        code, return_index=True, return_inverse=True, return_counts=True
    )
    # The rarest words of each name; all of them when none is rare.
    freq = count[word]
    rare = freq <= max(RARE_MIN, rare_share * n)
    has_rare = np.bincount(row[rare], minlength=n) > 0
    chosen = rare | ~has_rare[row]
    row, word, freq = row[chosen], word[chosen], freq[chosen]
    order = np.lexsort((freq, row))
    row, word = row[order], word[order]
    new_row = np.r_[True, row[1:] != row[:-1]]
    group_start = np.flatnonzero(new_row)
    rank = np.arange(len(row)) - np.repeat(group_start, np.diff(np.r_[group_start, len(row)]))
    row, word = row[rank < max_words], word[rank < max_words]
    # Keys of the chosen distinct words, then of each row.
    used = np.unique(word)
    owner, key = _word_keys(buf, start[first[used]], length[first[used]])
    owner = used[owner]
    by_word = np.argsort(owner, kind="stable")
    owner, key = owner[by_word], key[by_word]
    key_start = np.searchsorted(owner, np.arange(len(distinct)))
    key_count = np.searchsorted(owner, np.arange(len(distinct)), "right") - key_start
    counts = key_count[word]
    rows = np.repeat(row, counts)
    keys = key[_runs(key_start[word], counts)]
    # A key held by one row only pairs nothing.
    sorted_keys = np.sort(keys)
    shared = sorted_keys[1:][sorted_keys[1:] == sorted_keys[:-1]]
    held = np.isin(keys, shared)
    rows, keys = rows[held], keys[held]
    # Four shifted grids: a bucket per (key, cell); the row number in the low bits.
    bits = max(1, int(n - 1).bit_length())
    low = _U64((1 << bits) - 1)
    cell = 2.0 * radius
    px, py = reg.x[rows], reg.y[rows]
    found_a: list[NDArray[np.int64]] = []
    found_b: list[NDArray[np.int64]] = []
    for grid, (sx, sy) in enumerate(((0.0, 0.0), (radius, 0.0), (0.0, radius), (radius, radius))):
        cx = np.floor((px + sx) / cell).astype(np.int64).astype(_U64)
        cy = np.floor((py + sy) / cell).astype(np.int64).astype(_U64)
        with np.errstate(over="ignore"):
            place = _mix(cx * _U64(0x9E3779B97F4A7C15) + cy + _U64(grid))
        packed = np.sort((_mix(keys ^ place) & ~low) | rows.astype(_U64))
        bucket = packed & ~low
        bounds = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1], True])
        first_in, size = bounds[:-1], np.diff(bounds)
        first_in, size = first_in[size > 1], size[size > 1]
        if not len(size):
            continue
        # Every member against the members after it in its bucket.
        member = _runs(first_in, size)
        after = np.repeat(first_in + size, size) - member - 1
        left = np.repeat(member, after)
        right = _runs(member + 1, after)
        found_a.append((packed[left] & low).astype(np.int64))
        found_b.append((packed[right] & low).astype(np.int64))
    if not found_a:
        return none, none
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    a, b = np.minimum(a, b), np.maximum(a, b)
    pair = np.unique(a[a != b] * n + b[a != b])
    a, b = pair // n, pair % n
    near = np.hypot(reg.x[a] - reg.x[b], reg.y[a] - reg.y[b]) <= radius
    return a[near], b[near]
