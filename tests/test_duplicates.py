"""Duplicates across sources on real files: pairs found, merged, remembered, reported."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from carteco.auth import create_token
from carteco.duplicates import (
    DuplicateError,
    keep_apart,
    list_duplicates,
    merge,
    normalise_phone,
    score_pair,
    website_host,
)
from carteco.importer import run_import
from carteco.importer.mapping import Mapping
from tests.conftest import FIXTURES, ROOT, assert_problem

TRANSISCOPE = FIXTURES / "gogocarto" / "transiscope_elements.json"
TRANSISCOPE_MAPPING = Mapping.from_file(FIXTURES / "gogocarto" / "transiscope.mapping.toml")
LAND = FIXTURES / "foncier"


def _import(engine: sa.Engine, path: Path, source: str, mapping: Mapping, **kw: bool):  # type: ignore[no-untyped-def]
    report = run_import(engine, path, source=source, mapping=mapping, **kw)
    assert report.status == "succeeded", report.as_dict()
    return report


def _cross_same_entry(pairs):  # type: ignore[no-untyped-def]
    """The pairs of one Transiscope entry imported under the two source names."""
    return [
        p
        for p in pairs
        if {p.a["source"], p.b["source"]} == {"transiscope-a", "transiscope-b"}
        and p.a["source_id"] == p.b["source_id"]
    ]


def test_name_key_drops_legal_forms_articles_accents_and_punctuation(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        keys = conn.execute(
            sa.text(
                "SELECT carteco_name_key(:a), carteco_name_key(:b), carteco_name_key(:c), "
                "carteco_name_key(:d)"
            ),
            {
                "a": "ASSOC. Les Jardins d'Émile (SARL)",
                "b": "jardins emile",
                "c": "SCOP SAS L'Atelier du Vélo",
                "d": "Association",
            },
        ).one()
    assert keys[0] == keys[1] == "jardins emile"
    assert keys[2] == "atelier velo"
    assert keys[3] == "association"  # nothing but a legal form: kept rather than emptied


def test_name_key_edge_cases(engine: sa.Engine) -> None:
    """Keys the regular-expression version (0019, 0021) gave, kept by the word filter (0026)."""
    cases = {
        "Le La Les": "le la les",  # only stop words: the whole normalised name
        "Sas des Sas": "sas des sas",
        "SCOP  Ét. de   la Forêt du Rhône": "foret rhone",
        "ÉTABLISSEMENTS Dupont & fils": "dupont fils",
        " Ste-Anne  ": "anne",
        "Œuvre d'art & Cie": "oeuvre art cie",
        " -l- ": "l",
        "---": "",
        "": "",
        None: "",
    }
    with engine.connect() as conn:
        for name, key in cases.items():
            got = conn.execute(sa.text("SELECT carteco_name_key(:n)"), {"n": name}).scalar_one()
            assert got == key, name


def test_phone_website_and_score() -> None:
    assert normalise_phone("05 49 00 00 00") == normalise_phone(
        "+33 (0)5 49 00 00 00"[:4] + "549000000"
    )
    assert normalise_phone("0033 5 49 00 00 00") == "+33549000000"
    assert (
        website_host("https://www.Exemple.org/page") == website_host("exemple.org") == "exemple.org"
    )
    assert website_host("https://facebook.com/x") is None
    score, reasons = score_pair({"sim": 1.0, "dist": 0.0, "same_source": False})
    assert score >= 0.8 and reasons == ["même nom (normalisé)", "à 0 m", "sources différentes"]
    low, _ = score_pair({"sim": 0.2, "dist": 10.0, "same_source": False})
    assert low < 0.6  # two different names in one building are not duplicates


@pytest.fixture
def two_transiscopes(clean_registry: sa.Engine) -> Iterator[sa.Engine]:
    """The 100 Transiscope entries imported under two source names."""
    first = _import(clean_registry, TRANSISCOPE, "transiscope-a", TRANSISCOPE_MAPPING)
    assert first.created == 100
    yield clean_registry


def test_transiscope_twice_found_merged_and_not_recreated(two_transiscopes: sa.Engine) -> None:
    engine = two_transiscopes
    second = _import(engine, TRANSISCOPE, "transiscope-b", TRANSISCOPE_MAPPING)
    assert second.created == 100
    # The import itself reports the new rows that look like another source's structures.
    summary = second.as_dict()
    assert summary["possible_duplicates"] >= 100
    reported = {(p["a"]["source_id"], p["b"]["source_id"]) for p in summary["duplicates"]}
    assert sum(1 for a, b in reported if a == b) == 100

    with engine.begin() as conn:
        pairs = list_duplicates(conn)
    same = _cross_same_entry(pairs)
    assert len(same) == 100
    assert all(p.score >= 0.8 and "sources différentes" in p.reasons for p in same)
    # The file itself holds two entries twice (same name, 0–22 m): found too.
    within = [p for p in pairs if p.a["source"] == p.b["source"]]
    assert {p.a["name"].lower() for p in within} == {"l'alternateur", "is'eau énergie"}

    with engine.begin() as conn:
        for p in same:
            keep, other = (p.a, p.b) if p.a["source"] == "transiscope-a" else (p.b, p.a)
            done = merge(conn, keep["id"], other["id"], by="test")
            assert sorted(done["sources"]) == [f"transiscope-b:{other['source_id']}"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM structures")).scalar() == 100
        links = conn.execute(
            sa.text("SELECT source, count(*) FROM structure_sources GROUP BY 1 ORDER BY 1")
        ).all()
        assert [tuple(r) for r in links] == [("transiscope-a", 100), ("transiscope-b", 100)]
        assert conn.execute(sa.text("SELECT count(*) FROM structure_merges")).scalar() == 100
        decided = conn.execute(
            sa.text("SELECT count(*) FROM duplicate_decisions WHERE decision = 'merged'")
        ).scalar()
        assert decided == 100
    with engine.begin() as conn:
        assert _cross_same_entry(list_duplicates(conn)) == []

    # Third (and fourth) import: the merged source ids update the survivors, nothing is created.
    for source in ("transiscope-b", "transiscope-a"):
        again = _import(engine, TRANSISCOPE, source, TRANSISCOPE_MAPPING)
        assert (again.created, again.updated) == (0, 0), again.as_dict()
        assert again.unchanged == 100
        assert again.review.get("possible_duplicates", 0) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM structures")).scalar() == 100


def test_keep_apart_is_remembered_across_reimports(two_transiscopes: sa.Engine) -> None:
    engine = two_transiscopes
    with engine.begin() as conn:
        pair = next(p for p in list_duplicates(conn) if p.a["name"].lower() == "l'alternateur")
        keep_apart(conn, pair.a["id"], pair.b["id"], by="test")
    _import(engine, TRANSISCOPE, "transiscope-a", TRANSISCOPE_MAPPING)
    with engine.begin() as conn:
        ids = {(p.a["id"], p.b["id"]) for p in list_duplicates(conn)}
        assert (pair.a["id"], pair.b["id"]) not in ids
        assert {p.a["name"].lower() for p in list_duplicates(conn)} == {"is'eau énergie"}
        with pytest.raises(DuplicateError) as err:
            merge(conn, pair.a["id"], pair.a["id"])
        assert err.value.kind == "invalid"
        with pytest.raises(DuplicateError) as err:
            merge(conn, pair.a["id"], 999_999)
        assert err.value.kind == "not_found"


def test_merge_keeps_provenance_and_fills_gaps(two_transiscopes: sa.Engine) -> None:
    engine = two_transiscopes
    with engine.begin() as conn:
        pair = next(p for p in list_duplicates(conn) if p.a["name"].lower() == "is'eau énergie")
        a, b = pair.a["id"], pair.b["id"]
        names = dict(
            conn.execute(
                sa.text("SELECT id, name FROM structures WHERE id IN (:a, :b)"), {"a": a, "b": b}
            ).all()
        )
        done = merge(conn, a, b, by="test")
        assert done["provenance"]["name"] == {
            f"{pair.a['source']}:{pair.a['source_id']}": names[a],
            f"{pair.b['source']}:{pair.b['source_id']}": names[b],
        }
        snapshot = conn.execute(
            sa.text("SELECT snapshot FROM structure_merges WHERE merged_id = :b"), {"b": b}
        ).scalar_one()
        assert snapshot["name"] == names[b] and snapshot["geometry"]["type"] == "Point"
        with pytest.raises(DuplicateError) as err:
            merge(conn, a, b)
        assert err.value.kind == "conflict"  # already merged


def test_siae_and_mediation_overlaps_and_field_conflicts(clean_registry: sa.Engine) -> None:
    engine = clean_registry
    siae = _import(
        engine,
        LAND / "siae_31_08_2019-07.csv",
        "siae",
        Mapping.from_file(LAND / "siae.mapping.toml"),
    )
    med = run_import(
        engine,
        LAND / "mediation_numerique_31_08_2022.csv",
        source="mediation",
        mapping=Mapping.from_file(LAND / "mediation_numerique.mapping.toml"),
        skip_invalid=True,
    )
    assert siae.created and med.status == "succeeded"
    # Rows matched to a SIAE by SIRET whose name or commune differ: each source's value.
    conflicts = {c["identifier"]: c for c in med.review["conflicts"]}
    assert med.review["field_conflicts"] == len(conflicts) >= 2
    frontonnais = conflicts["20003495700031"]
    assert frontonnais["fields"]["name"] == {
        "siae": "COMMUNAUTE DE COMMUNES DU FRONTONNAIS",
        "mediation": "Château Capedeville",
    }
    assert frontonnais["matched_by"] == "SIRET"


def test_demo_shared_siret_groups_and_cross_source_overlaps(demo_registry: sa.Engine) -> None:
    with demo_registry.begin() as conn:
        pairs = list_duplicates(conn)
    emmaus = [p for p in pairs if p.a["name"].upper().startswith("EMMAUS CONNECT")]
    ids = {p.a["id"] for p in emmaus} | {p.b["id"] for p in emmaus}
    assert len(ids) == 4 and len(emmaus) == 6  # 4 identical cards, every pair of them
    assert all("même SIRET" in p.reasons and p.score == 1.0 for p in emmaus)
    cross = [
        p
        for p in pairs
        if {p.a["source"], p.b["source"]} == {"siae-2019", "mediation-numerique-2022"}
    ]
    la_mine = [p for p in cross if "MINE" in p.a["name"].upper()]
    assert la_mine and "même SIRET" in la_mine[0].reasons


def _carteco(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CARTECO_DATABASE_URL": database_url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "carteco.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


def test_cli_list_merge_keep_apart(database_url: str, two_transiscopes: sa.Engine) -> None:
    mapping = str(FIXTURES / "gogocarto" / "transiscope.mapping.toml")
    imp = _carteco(
        database_url, "import", str(TRANSISCOPE), "--source", "transiscope-b", "--mapping", mapping
    )
    assert imp.returncode == 0, imp.stderr
    assert "doublons possibles avec d'autres sources : 104\n" in imp.stdout
    listed = _carteco(database_url, "duplicates", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    pairs = json.loads(listed.stdout)
    assert len(pairs) == 108 and pairs[0]["reasons"]
    rows = list(
        csv.reader(
            _carteco(
                database_url, "duplicates", "list", "--format", "csv", "--min-score", "0.99"
            ).stdout.splitlines()
        )
    )
    assert rows[0][:3] == ["score", "distance_m", "id_a"] and len(rows) > 1
    a, b = pairs[0]["a"]["id"], pairs[0]["b"]["id"]
    merged = _carteco(database_url, "duplicates", "merge", str(a), str(b), "--keep", str(b))
    assert merged.returncode == 0, merged.stderr
    assert f"Structure {a} fusionnée dans {b}" in merged.stdout
    again = _carteco(database_url, "duplicates", "merge", str(a), str(b))
    assert again.returncode == 1 and "déjà été fusionnée" in again.stderr
    c, d = pairs[1]["a"]["id"], pairs[1]["b"]["id"]
    apart = _carteco(database_url, "duplicates", "keep-apart", str(c), str(d))
    assert apart.returncode == 0, apart.stderr
    left = json.loads(_carteco(database_url, "duplicates", "list", "--format", "json").stdout)
    assert len(left) == 106
    bad = _carteco(database_url, "duplicates", "list", "--territoire", "pays:FR")
    assert bad.returncode == 2 and "niveau:code" in bad.stderr
    with two_transiscopes.connect() as conn:
        actions = conn.execute(sa.text("SELECT action FROM audit_log ORDER BY id")).scalars()
        assert list(actions)[-2:] == ["merge", "keep-apart"]


@pytest.fixture
def api(settings, two_transiscopes):  # type: ignore[no-untyped-def]
    """A TestClient on the full app, over the two Transiscope imports."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    _import(two_transiscopes, TRANSISCOPE, "transiscope-b", TRANSISCOPE_MAPPING)
    unlimited = settings.model_copy(update={"rate_limit_writes_per_minute": 0})
    with TestClient(create_app(unlimited)) as c:
        yield c


def test_api_moderation(api, engine: sa.Engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        _, moderator = create_token(conn, "modération", ["moderate"])
        _, editor = create_token(conn, "éditeur", ["edit"])
    mod = {"Authorization": f"Bearer {moderator}"}
    assert_problem(api.get("/duplicates"), 401)
    assert_problem(api.get("/duplicates", headers={"Authorization": f"Bearer {editor}"}), 403)
    assert_problem(api.get("/duplicates?min_score=2", headers=mod), 400)
    listed = api.get("/duplicates?limit=5", headers=mod)
    assert listed.status_code == 200
    body = listed.json()
    assert body["count"] == 108 and len(body["pairs"]) == 5
    pair = body["pairs"][0]
    a, b = pair["a"]["id"], pair["b"]["id"]
    item = api.get(f"/collections/structures/items/{a}")
    etag = item.headers["ETag"]
    url = f"/duplicates/{a}/{b}/merge"
    assert_problem(api.post(url, headers={**mod, "If-Match": '"999"'}), 412)
    assert_problem(api.post(f"{url}?keep=12345", headers=mod), 400)
    done = api.post(url, headers={**mod, "If-Match": etag})
    assert done.status_code == 200, done.text
    assert done.json()["kept"] == a and done.json()["merged"] == b
    moved = api.get(f"/collections/structures/items/{b}?f=json", follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"].endswith(f"/collections/structures/items/{a}?f=json")
    assert api.get(f"/collections/structures/items/{b}").json()["id"] in (a, str(a))
    assert_problem(api.post(url, headers=mod), 409)
    c, d = body["pairs"][1]["a"]["id"], body["pairs"][1]["b"]["id"]
    kept = api.post(f"/duplicates/{c}/{d}/keep-apart", headers=mod)
    assert kept.status_code == 200 and kept.json()["decision"] == "kept_apart"
    assert api.get("/duplicates", headers=mod).json()["count"] == 106
    with engine.connect() as conn:
        audit = conn.execute(
            sa.text("SELECT action, token_name FROM audit_log ORDER BY id DESC LIMIT 2")
        ).all()
    assert [tuple(r) for r in audit] == [("keep-apart", "modération"), ("merge", "modération")]
