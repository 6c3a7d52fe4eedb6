"""Duplicate candidates at scale: the numpy name-and-place blocks against brute force, the
bit-parallel edit distance against the table, and the whole-registry path on real PostGIS
(equality blocks, website and phone within a commune, a large subset, remembered decisions)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sqlalchemy as sa

from carteco import duplicates
from carteco.duplicate_blocks import Registry, name_grid_pairs, read_registry
from carteco.duplicates import (
    MAX_GROUP,
    candidate_pairs,
    edit_distance,
    keep_apart,
    list_duplicates,
)

RADIUS = 150.0
COMMON = ("epicerie solidaire", "ressourcerie", "jardin partage", "atelier velo", "amap")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _table_distance(a: str, b: str) -> int:
    """Optimal string alignment distance, the textbook table (the reference)."""
    d = [[max(i, j) if min(i, j) == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_bit_parallel_edit_distance_is_the_table() -> None:
    rnd = random.Random(3)
    for _ in range(1500):
        alphabet = rnd.choice(("ab", "abc ", LETTERS + " "))
        a = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        b = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 70)))
        assert edit_distance(a, b) == _table_distance(a, b), (a, b)
    assert edit_distance("bravelune", "bravleune") == 1  # two letters swapped
    assert edit_distance("", "abc") == 3


def _typo(rnd: random.Random, word: str) -> str:
    """One letter replaced, dropped, added or swapped with the next."""
    i = rnd.randrange(len(word))
    kind = rnd.choice(("replace", "drop", "add", "swap") if i < len(word) - 1 else ("replace",))
    if kind == "replace":
        return word[:i] + rnd.choice([c for c in LETTERS if c != word[i]]) + word[i + 1 :]
    if kind == "drop":
        return word[:i] + word[i + 1 :]
    if kind == "add":
        return word[:i] + rnd.choice(LETTERS) + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def _registry(names: list[str], points: list[tuple[float, float]]) -> Registry:
    return Registry(
        np.arange(1, len(names) + 1, dtype=np.int64),
        np.array([p[0] for p in points], np.float64),
        np.array([p[1] for p in points], np.float64),
        "\n".join(names).encode(),
    )


def _found(reg: Registry) -> set[tuple[int, int]]:
    a, b = name_grid_pairs(reg, RADIUS)
    return set(zip(a.tolist(), b.tolist(), strict=True))


def test_one_typo_in_any_word_of_any_length_is_found_across_cells() -> None:
    """Every copy with one typo in one word, moved anywhere within the radius, is paired."""
    rnd = random.Random(12)
    names: list[str] = []
    points: list[tuple[float, float]] = []
    planted = set()
    for k in range(600):
        length = 3 + k % 16  # short words (deletions) and long ones (affixes)
        proper = "".join(rnd.choice(LETTERS) for _ in range(length))
        name = f"{rnd.choice(COMMON)} {proper}"
        if k % 3 == 0:
            name += " " + "".join(rnd.choice(LETTERS) for _ in range(rnd.randint(3, 9)))
        words = name.split()
        j = rnd.randrange(len(words))
        words[j] = _typo(rnd, words[j])
        # Points near multiples of the cell size too: grids must not lose a pair at a border.
        x0 = 650_000 + 300.0 * rnd.randint(0, 50) + rnd.choice((0.0, 0.5, 149.9, 150.0, 299.9))
        y0 = 6_860_000 + 300.0 * rnd.randint(0, 50) + rnd.choice((0.0, 0.5, 150.0, 299.9))
        d, angle = rnd.uniform(0, RADIUS - 0.01), rnd.uniform(0, 2 * math.pi)
        names += [name, " ".join(words)]
        points += [(x0, y0), (x0 + d * math.cos(angle), y0 + d * math.sin(angle))]
        planted.add((len(names) - 2, len(names) - 1))
    # Fillers: the common words are frequent, as in a real registry.
    for _ in range(4000):
        names.append(f"{rnd.choice(COMMON)} {''.join(rnd.choice(LETTERS) for _ in range(12))}")
        points.append((rnd.uniform(0, 2e5), rnd.uniform(6.5e6, 6.7e6)))
    reg = _registry(names, points)
    found = _found(reg)
    assert planted <= found, sorted(planted - found)[:5]
    # Nothing farther than the radius.
    for a, b in found:
        assert math.dist(points[a], points[b]) <= RADIUS


def test_common_words_alone_pair_nothing_and_points_apart_never_pair() -> None:
    """A dense block of épiceries with unrelated proper names: no pair; same name 151 m: none."""
    rnd = random.Random(5)
    names, points = [], []
    for i in range(3000):  # one cell, all "épicerie solidaire …": quadratic if words paired
        tag = "".join(LETTERS[i // 26**k % 26] for k in range(5))  # distinct ends, no typo apart
        middle = "".join(rnd.choice(LETTERS) for _ in range(6))
        names.append(f"epicerie solidaire {tag}{middle}{tag[::-1]}")
        points.append((652_000 + rnd.uniform(0, 100), 6_862_000 + rnd.uniform(0, 100)))
    names += ["ressourcerie bravelune", "ressourcerie bravelune", "centre social", "centre social"]
    points += [
        (700_000, 6_900_000),
        (700_151, 6_900_000),
        (710_000, 6_900_000),
        (710_010, 6_900_000),
    ]
    names.append("ressourcerie bravelune")  # no point
    points.append((math.nan, math.nan))
    found = _found(_registry(names, points))
    n = 3000
    # Only the two "centre social" (common words only: all of them are keys) pair.
    assert found == {(n + 2, n + 3)}


def test_empty_unplaced_and_unnamed_registries_pair_nothing() -> None:
    nan = (math.nan, math.nan)
    assert not _found(_registry([], []))
    assert not _found(_registry(["ressourcerie"], [(0.0, 0.0)]))
    assert not _found(_registry(["ressourcerie", "ressourcerie"], [nan, nan]))
    assert not _found(_registry(["", "", "a"], [(0.0, 0.0)] * 3))
    assert _found(_registry(["abc", "abd", ""], [(0.0, 0.0), (10.0, 0.0), (0.0, 0.0)])) == {(0, 1)}


@pytest.fixture
def registry(clean_registry: sa.Engine) -> sa.Engine:
    """Structures placed by hand (Lambert-93 metres around Niort) in two communes."""

    def add(conn: sa.Connection, sid: str, name: str, dx: float | None, **kw: object) -> int:
        params = {
            "name": name,
            "sid": sid,
            "source": kw.get("source", "a"),
            "dx": dx,
            "insee": kw.get("insee", "79191"),
            "siret": kw.get("siret"),
            "rna": kw.get("rna"),
            "web": kw.get("website"),
            "extra": kw.get("extra", "{}"),
            "status": kw.get("status", "active"),
        }
        return int(
            conn.execute(
                sa.text(
                    """
                    INSERT INTO structures (name, source, source_id, content_hash, geom,
                                            insee_code, postcode, siret, rna, website, extra,
                                            status)
                    VALUES (:name, :source, :sid, 'h',
                            CASE WHEN CAST(:dx AS float8) IS NOT NULL THEN ST_Transform(
                                ST_SetSRID(ST_MakePoint(432000 + :dx, 6588000), 2154), 4326)
                            END,
                            :insee, :insee, :siret, :rna, :web, CAST(:extra AS jsonb), :status)
                    RETURNING id
                    """
                ),
                params,
            ).scalar_one()
        )

    with clean_registry.begin() as conn:
        # A typo 30 m apart, from another source.
        add(conn, "1", "Ressourcerie La Bravelune", 0)
        add(conn, "2", "RESSOURCERIE BRAVLEUNE", 30, source="b")
        # Same website, same commune, 2 km apart (one source at the town hall), another name.
        add(conn, "3", "Atelier vélo Kermartin", 2000, website="https://www.kermartin.fr/")
        add(conn, "4", "Atelier du vélo de Kermartin", 4000, website="http://kermartin.fr/x")
        # Same phone, same commune, far apart.
        add(conn, "5", "Jardin partagé Rosefleu", 6000, extra='{"telephone": "05 49 00 00 00"}')
        add(conn, "6", "Jardin Rosefleu", 8000, extra='{"tel": "+33 5 49 00 00 00"}')
        # A network's site, shared by more than MAX_GROUP structures: no pairs from it.
        for i in range(MAX_GROUP + 1):
            add(conn, f"n{i}", f"Épicerie Réseau {LETTERS[i]}x{i}", 10_000 + 1000 * i,
                website="https://reseau.example.org")  # fmt: skip
        # No point: the same name in the same commune; a hidden one is never proposed.
        add(conn, "7", "Café associatif Zélune", None)
        add(conn, "8", "Cafe associatif Zelune", 20_000)
        add(conn, "9", "Ressourcerie La Bravelune", 10, status="hidden")
        # Same SIRET, different names, different communes.
        add(conn, "10", "SCOP Ouvrière", 30_000, siret="35600000000048", insee="79049")
        add(conn, "11", "Menuiserie coopérative", 90_000, siret="35600000000048")
    return clean_registry


def _by_source_id(engine: sa.Engine, pairs: list[duplicates.Pair]) -> dict[tuple[str, str], object]:
    return {tuple(sorted((p.a["source_id"], p.b["source_id"]))): p for p in pairs}  # type: ignore[misc]


def test_whole_registry_blocks_on_postgis(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        reg = read_registry(conn)
        assert len(reg.ids) == 21 and np.isnan(reg.x).sum() == 1  # hidden left out
        timings: dict[str, float] = {}
        pairs = list_duplicates(conn, min_score=0.0, timings=timings)
    assert "name and place blocks (numpy)" in timings
    found = _by_source_id(registry, pairs)
    typo = found[("1", "2")]
    assert typo.score >= 0.75 and "sources différentes" in typo.reasons  # type: ignore[attr-defined]
    assert "même site web" in found[("3", "4")].reasons  # type: ignore[attr-defined]
    assert "même téléphone" in found[("5", "6")].reasons  # type: ignore[attr-defined]
    assert "même commune" in found[("7", "8")].reasons  # type: ignore[attr-defined]
    assert "même SIRET" in found[("10", "11")].reasons  # type: ignore[attr-defined]
    assert not any(a.startswith("n") and b.startswith("n") for a, b in found)
    assert not any("9" in key for key in found)


def test_large_subset_uses_the_whole_registry_blocks(
    registry: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large subset (SUBSET_PROBES, PROBE_SHARE): the whole registry's pairs touching it."""
    with registry.begin() as conn:
        ids = [
            int(i)
            for i in conn.execute(
                sa.text("SELECT id FROM structures WHERE source_id IN ('2', '4', '8', '10')")
            ).scalars()
        ]
        probed = _by_source_id(registry, candidate_pairs(conn, ids, 0.0))
        monkeypatch.setattr(duplicates, "SUBSET_PROBES", 0)
        monkeypatch.setattr(duplicates, "PROBE_SHARE", 0.0)
        blocked = _by_source_id(registry, candidate_pairs(conn, ids, 0.0))
        everything = _by_source_id(registry, candidate_pairs(conn, None, 0.0))
    wanted = {"2", "4", "8", "10"}
    assert set(blocked) == {k for k in everything if wanted & set(k)}
    assert {("1", "2"), ("3", "4"), ("7", "8"), ("10", "11")} <= set(blocked)
    # The index probes (an import's few new rows) find the name, place and identifier pairs.
    assert {("1", "2"), ("7", "8"), ("10", "11")} <= set(probed)


def test_kept_apart_pair_does_not_come_back_from_the_blocks(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        pair = next(p for p in list_duplicates(conn) if p.a["source_id"] in ("1", "2"))
        keep_apart(conn, pair.a["id"], pair.b["id"], by="test")
    with registry.begin() as conn:
        again = {(p.a["id"], p.b["id"]) for p in list_duplicates(conn, min_score=0.0)}
    assert (pair.a["id"], pair.b["id"]) not in again
