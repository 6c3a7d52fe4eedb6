"""Candidate pairs of the whole registry by name and place, vectorised (numpy).

A pair of structures is a candidate when their points are at most `radius` metres apart
(Lambert-93) and their normalised names (`name_key`) share a *key* of a discriminating word.
Words shared by a large share of the registry ("epicerie", "solidaire", "jardin"…) are not
keys: in a dense town centre they would pair every épicerie with every other. A name keeps
its rarest words (a name made only of common words keeps them all), and each word gives
keys that a single typo cannot all change:

- a word of at most 11 letters: itself and every form with one letter removed (a letter
  replaced, dropped, added or two swapped leave one of these forms in common);
- a word of at least 11 letters: its first five and its last five letters (one typo
  changes at most one of the two when the longer word has 12 letters or more).

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
AFFIX = 5  # words of 2·AFFIX + 1 letters or more give their first and last AFFIX letters…
SHORT_WORD = 2 * AFFIX + 1  # …words up to this length their one-letter-removed forms

_U64 = np.uint64
_BASE = 37  # letters and digits are 1..36 in a word's number; 0 pads

# One byte → its digit (1..36) in a word's number; other bytes are not in a name key.
_DIGIT = np.zeros(256, np.uint8)
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


def _number(digits: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Base-37 number of rows of digits (up to 12 columns: exact in 63 bits)."""
    out = np.zeros(len(digits), np.int64)
    for j in range(digits.shape[1]):
        out *= _BASE
        out += digits[:, j]
    return out


def _runs(start: NDArray[np.int64], length: NDArray[np.int64]) -> NDArray[np.int64]:
    """The indices start[i] … start[i] + length[i] - 1, for every i, concatenated."""
    total = int(length.sum())
    first = np.repeat(np.cumsum(length) - length, length)
    return np.repeat(start, length) + (np.arange(total, dtype=np.int64) - first)


def _words(buf: NDArray[np.uint8]) -> tuple[NDArray[np.int64], ...]:
    """Each word of the name keys: its row, start (byte offset) and length."""
    sep = (buf == 32) | (buf == 10)
    edges = np.flatnonzero(np.diff(np.r_[True, sep, True].astype(np.int8)))
    start, end = edges[0::2], edges[1::2]
    row = np.searchsorted(np.flatnonzero(buf == 10), start)
    return row.astype(np.int64), start.astype(np.int64), (end - start).astype(np.int64)


def _chars(buf: NDArray[np.uint8], start: NDArray[np.int64], width: int) -> NDArray[np.uint8]:
    """Digits of `width` bytes from each start (the caller masks those past a word's end);
    `buf` holds digits already (`_DIGIT[name bytes]`)."""
    idx = np.minimum(start[:, None] + np.arange(width), len(buf) - 1)
    return buf[idx]


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
) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """Keys of words (one occurrence each), a row per word: keys and which are valid.

    Columns: the word, the word without its letter i (i < SHORT_WORD), its first and last
    AFFIX letters; see the module docstring for which apply. Hashed: spread over 64 bits.
    """
    w = SHORT_WORD
    n = len(start)
    keys = np.zeros((n, w + 3), np.int64)
    valid = np.zeros((n, w + 3), bool)
    short = length <= w
    digits = _chars(buf, start, w)
    digits[np.arange(w) >= length[:, None]] = 0
    keys[:, 0] = _number(digits)
    valid[:, 0] = short
    for i in range(w):
        dropped = np.concatenate([digits[:, :i], digits[:, i + 1 :], digits[:, :1] * 0], axis=1)
        keys[:, i + 1] = _number(dropped)
        valid[:, i + 1] = short & (length > i)
    keys[:, w + 1] = _number(_chars(buf, start, AFFIX)) | (1 << 60)
    keys[:, w + 2] = _number(_chars(buf, start + length - AFFIX, AFFIX)) | (1 << 61)
    valid[:, w + 1] = valid[:, w + 2] = length >= w
    return _mix(keys.astype(_U64)), valid


def _pairs_in_buckets(packed: NDArray[np.uint64], low: np.uint64) -> tuple[NDArray[np.int64], ...]:
    """Rows of every pair in one bucket, from sorted (bucket | row) numbers."""
    bucket = packed & ~low
    bounds = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1], True])
    first, size = bounds[:-1], np.diff(bounds)
    first, size = first[size > 1], size[size > 1]
    member = _runs(first, size)
    after = np.repeat(first + size, size) - member - 1  # members after it in its bucket
    left = np.repeat(member, after)
    right = _runs(member + 1, after)
    return (packed[left] & low).astype(np.int64), (packed[right] & low).astype(np.int64)


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
    text = np.frombuffer(reg.names, np.uint8)
    row, start, length = _words(text)
    buf = _DIGIT[text]
    placed = np.isfinite(reg.x) & np.isfinite(reg.y)
    keep = (length > 1) & placed[row]
    row, start, length = row[keep], start[keep], length[keep]
    _, word, count = np.unique(
        _word_codes(buf, start, length), return_inverse=True, return_counts=True
    )
    # The rarest words of each name; all of them when none is rare.
    freq = count[word]
    rare = freq <= max(RARE_MIN, rare_share * n)
    has_rare = np.bincount(row[rare], minlength=n) > 0
    chosen = np.flatnonzero(rare | ~has_rare[row])  # indices of word occurrences
    row, word, freq = row[chosen], word[chosen], freq[chosen]
    many = np.bincount(row, minlength=n) > max_words
    if many.any():  # a long name: its max_words rarest words
        crowd = np.flatnonzero(many[row])
        crowd = crowd[np.lexsort((freq[crowd], row[crowd]))]
        first = np.r_[True, row[crowd][1:] != row[crowd][:-1]]
        starts = np.flatnonzero(first)
        rank = np.arange(len(crowd)) - np.repeat(starts, np.diff(np.r_[starts, len(crowd)]))
        kept = np.ones(len(row), bool)
        kept[crowd[rank >= max_words]] = False
        row, word, chosen = row[kept], word[kept], chosen[kept]
    # Keys of the distinct words chosen (from one occurrence of each), then of each row.
    used = np.zeros(len(count), bool)
    used[word] = True
    used_words = np.flatnonzero(used)
    occurrence = np.empty(len(count), np.int64)
    occurrence[word] = chosen  # any occurrence of a word has its letters
    position = np.empty(len(count), np.int64)
    position[used_words] = np.arange(len(used_words))
    word_keys, word_valid = _word_keys(
        buf, start[occurrence[used_words]], length[occurrence[used_words]]
    )
    valid = word_valid[position[word]]
    keys = word_keys[position[word]][valid]
    rows = np.broadcast_to(row[:, None], valid.shape)[valid]
    if len(keys) < 2:
        return none, none
    # A key held by one row only pairs nothing: sorted (key | index) numbers find the others.
    bits = max(1, int(len(keys) - 1).bit_length())
    low = _U64((1 << bits) - 1)
    packed = np.sort((keys & ~low) | np.arange(len(keys), dtype=_U64))
    high = packed & ~low
    shared = np.r_[high[1:] == high[:-1], False] | np.r_[False, high[1:] == high[:-1]]
    held = (packed[shared] & low).astype(np.int64)
    rows, keys = rows[held], keys[held]
    # Four shifted grids: a bucket per (key, cell), the row number in the low bits.
    bits = max(1, int(n - 1).bit_length())
    low = _U64((1 << bits) - 1)
    cell = 2.0 * radius
    found_a: list[NDArray[np.int64]] = []
    found_b: list[NDArray[np.int64]] = []
    for grid, (sx, sy) in enumerate(((0.0, 0.0), (radius, 0.0), (0.0, radius), (radius, radius))):
        with np.errstate(invalid="ignore"):
            cx = np.floor((reg.x + sx) / cell).astype(np.int64).astype(_U64)
            cy = np.floor((reg.y + sy) / cell).astype(np.int64).astype(_U64)
        with np.errstate(over="ignore"):
            place = _mix(cx * _U64(0x9E3779B97F4A7C15) + cy + _U64(grid))
        packed = np.sort(((keys ^ place[rows]) & ~low) | rows.astype(_U64))
        a, b = _pairs_in_buckets(packed, low)
        found_a.append(a)
        found_b.append(b)
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    a, b = np.minimum(a, b), np.maximum(a, b)
    pair = np.unique(a[a != b] * n + b[a != b])
    a, b = pair // n, pair % n
    near = np.hypot(reg.x[a] - reg.x[b], reg.y[a] - reg.y[b]) <= radius
    return a[near], b[near]
