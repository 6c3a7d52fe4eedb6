"""The map's search box (/carte/recherche) on the demo registry: every word must match."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from carteco.text import fold
from tests.conftest import assert_problem


def search(client, q: str, **view: float) -> list[dict]:  # type: ignore[no-untyped-def]
    r = client.get("/carte/recherche", params={"q": q, **view})
    assert r.status_code == 200, r.text
    return r.json()["structures"]  # type: ignore[no-any-return]


def haystacks(engine: sa.Engine, ids: list[int]) -> dict[int, str]:
    """Each structure's folded name, commune and address, as the search reads them."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, concat_ws(' ', name, commune_name, address_line) AS h "
                "FROM structures WHERE id = ANY(:ids)"
            ),
            {"ids": ids},
        ).all()
    return {r.id: " " + fold(r.h) + " " for r in rows}


def assert_every_word(engine: sa.Engine, q: str, found: list[dict]) -> None:
    words = fold(q).split()
    ids = [i for s in found for i in s["ids"]]
    hay = haystacks(engine, ids)
    for i in ids:
        for w in words:
            assert w in hay[i], (q, w, hay[i])


def test_every_word_must_match_and_best_first(client, demo_data) -> None:
    found = search(client, "emmaus montreuil")
    assert found, "ASSOC EMMAUS ALTERNATIVES (Montreuil) not found"
    assert found[0]["label"].startswith("ASSOC EMMAUS ALTERNATIVES")
    assert "montreuil" in fold(found[0]["label"])
    assert_every_word(demo_data, "emmaus montreuil", found)
    # Order of words, case, accents and punctuation do not matter.
    for q in ("Montreuil EMMAÜS", "  émmaus,  montreuil! ", "EMMAUS-MONTREUIL"):
        assert [s["id"] for s in search(client, q)] == [s["id"] for s in found], q


@pytest.mark.parametrize(
    "q", ["emmaus", "emmaus paris", "connect archereau", "rue des federes", "insertion 93"]
)
def test_every_result_holds_every_word(client, demo_data, q: str) -> None:
    found = search(client, q)
    assert_every_word(demo_data, q, found)


def test_a_word_found_nowhere_empties_the_result(client, demo_data) -> None:
    assert search(client, "emmaus zzzqqq") == []
    # Folded away entirely (punctuation only): no structure, no error.
    assert search(client, "%_%") == []


def test_name_matches_rank_before_address_matches(client, demo_data) -> None:
    # "archereau" is in EMMAUS CONNECT's and EMMAUS DEFI's addresses only: a name match
    # on "emmaus" ranks them, whatever the address.
    found = search(client, "emmaus")
    assert found and all("emmaus" in fold(s["label"]) for s in found)


def test_identical_records_collapse(client, demo_data) -> None:
    with demo_data.connect() as conn:
        (n,) = conn.execute(
            sa.text(
                "SELECT count(*) FROM structures WHERE status = 'active' AND geom IS NOT NULL "
                "AND name = 'EMMAUS CONNECT FONDATEUR ABBE PIERRE'"
            )
        ).one()
    assert n > 1  # the demo holds several identical cards for it
    found = search(client, "emmaus connect")
    same = [s for s in found if s["label"].startswith("EMMAUS CONNECT FONDATEUR ABBE PIERRE")]
    assert len(same) == 1, found
    assert same[0]["count"] == n == len(same[0]["ids"])
    assert same[0]["id"] == min(same[0]["ids"])
    labels = [s["label"] for s in found]
    assert len(labels) == len(set(labels))


def test_equal_matches_ranked_by_distance_to_the_view(client, demo_data) -> None:
    with demo_data.begin() as conn:
        # The demo's SIAE are not geocoded: place these two at their town halls (approx.).
        conn.execute(
            sa.text(
                "UPDATE structures SET geom = ST_SetSRID(ST_MakePoint(CASE name "
                "WHEN 'ASSOC AEPBN EMMAUS' THEN 2.2063 ELSE 2.4180 END, CASE name "
                "WHEN 'ASSOC AEPBN EMMAUS' THEN 48.8924 ELSE 48.8051 END), 4326) "
                "WHERE name IN ('ASSOC AEPBN EMMAUS', 'EMMAUS FRIPERIE SOLIDAIRE')"
            )
        )
        rows = conn.execute(
            sa.text(
                "SELECT name, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM structures "
                "WHERE status = 'active' AND geom IS NOT NULL "
                "AND name IN ('ASSOC AEPBN EMMAUS', 'EMMAUS FRIPERIE SOLIDAIRE')"
            )
        ).all()
    assert {r.name for r in rows} == {"ASSOC AEPBN EMMAUS", "EMMAUS FRIPERIE SOLIDAIRE"}
    for r in rows:
        found = search(client, "emmaus", lon=r.lon, lat=r.lat)
        assert found[0]["label"].startswith(r.name), (r.name, found[0])


def test_bad_view_is_a_problem(client, demo_data) -> None:
    for params in ({"lon": "abc"}, {"lon": "200", "lat": "48"}, {"lat": "nan", "lon": "2"}):
        assert_problem(client.get("/carte/recherche", params={"q": "emmaus", **params}), 400)
