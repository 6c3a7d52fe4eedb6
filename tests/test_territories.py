"""Territory tagging computed in the database, and the reference-data loader."""

import json
import re

import sqlalchemy as sa

from geodata.build_contrats_ville import build, clean_codes, clean_name
from geodata.loader import load_all, read_manifest, verify_checksums


def test_montreuil_point(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        row = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Mairie de Montreuil', 't', '1', '-',
                        ST_SetSRID(ST_MakePoint(2.4417, 48.8620), 4326))
                RETURNING commune_code, ept_code, epci_code, departement_code, region_code
                """
            )
        ).one()
    assert tuple(row) == ("93048", "200057875", "200054781", "93", "11")


def test_paris_arrondissement(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        row = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Place de la République', 't', '2', '-',
                        ST_SetSRID(ST_MakePoint(2.3631, 48.8675), 4326))
                RETURNING commune_code, arrondissement_code, ept_code
                """
            )
        ).one()
    assert tuple(row) == ("75056", "75103", "T1")


def test_every_commune_interior_point(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        conn.execute(sa.text("SET LOCAL statement_timeout = '300s'"))
        # Every IDF commune and one in ten of the rest of France (every département).
        conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                SELECT name, 'pos', code, '-', ST_PointOnSurface(geom)
                  FROM territories
                 WHERE level = 'commune' AND (layer = 'communes_idf' OR code LIKE '%7')
                """
            )
        )
        expected = conn.execute(
            sa.text(
                "SELECT count(*) FROM territories WHERE level = 'commune' "
                "AND (layer = 'communes_idf' OR code LIKE '%7')"
            )
        ).scalar_one()
        # All of France (#15): each commune's interior point gets the commune, its EPCI, its
        # département and its région — IDF from the IDF layer, the rest from the France layer.
        total, idf, wrong = conn.execute(
            sa.text(
                """
                SELECT count(*), count(*) FILTER (WHERE s.region_code = '11'),
                       array_agg(s.source_id) FILTER (
                    WHERE s.commune_code IS DISTINCT FROM s.source_id
                       OR s.epci_code IS DISTINCT FROM t.epci_code
                       OR s.departement_code IS DISTINCT FROM t.departement_code
                       OR s.region_code IS DISTINCT FROM t.region_code)
                  FROM structures s
                  JOIN territories t ON t.level = 'commune' AND t.code = s.source_id
                 WHERE s.source = 'pos'
                """
            )
        ).one()
    assert expected > 4000 and (total, idf, wrong) == (expected, 1266, None)


def test_moving_a_point_retags_it(clean_registry: sa.Engine) -> None:
    with clean_registry.begin() as conn:
        sid = conn.execute(
            sa.text(
                """
                INSERT INTO structures (name, source, source_id, content_hash, geom)
                VALUES ('Itinérante', 't', '3', '-', ST_SetSRID(ST_MakePoint(2.4417, 48.862), 4326))
                RETURNING id
                """
            )
        ).scalar_one()
        conn.execute(
            sa.text(
                "UPDATE structures SET geom = ST_SetSRID(ST_MakePoint(2.3522, 48.8566), 4326) "
                "WHERE id = :id"
            ),
            {"id": sid},
        )
        code, version = conn.execute(
            sa.text("SELECT commune_code, version FROM structures WHERE id = :id"), {"id": sid}
        ).one()
    assert code == "75056" and version == 2


def test_geodata_manifest_and_idempotent_load(engine: sa.Engine) -> None:
    verify_checksums()
    layers = read_manifest()
    assert all(la.licence and la.source and la.vintage and len(la.sha256) == 64 for la in layers)
    with engine.begin() as conn:
        results = load_all(conn)
        counts = dict(
            conn.execute(sa.text("SELECT level, count(*) FROM territories GROUP BY 1")).all()
        )
        stations = conn.execute(sa.text("SELECT count(*) FROM stations")).scalar_one()
    assert {r.action for r in results} == {"unchanged"}
    assert counts["commune"] == 1266 + 33602 and counts["arrondissement"] == 20
    assert counts["ept"] == 12 and counts["epci"] == 52 + 1203
    assert counts["departement"] == 96 and counts["region"] == 13
    assert stations == 1234


def test_contrats_ville_layer_points_lie_in_their_departement(engine: sa.Engine) -> None:
    """The shipped contrats de ville: every point of the file loaded, each in the département
    it is given (PostGIS over the shipped outlines), codes unique and clean."""
    layer = next(la for la in read_manifest() if la.kind == "contrats_ville")
    feats = json.loads(layer.path.read_text(encoding="utf-8"))["features"]
    codes = [f["properties"]["code_cv"] for f in feats]
    assert len(codes) == len(set(codes)) == 77
    assert all(re.fullmatch(r"CV\d{3}", c) for c in codes)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                SELECT c.code, c.departement_code, d.code AS inside
                  FROM contrats_ville c
                  LEFT JOIN territories d
                    ON d.level = 'departement' AND ST_Contains(d.geom, c.geom)
                """
            )
        ).all()
    assert sorted(r.code for r in rows) == sorted(codes)
    assert [r.code for r in rows if r.inside != r.departement_code] == []
    by_code = {r.code: r.departement_code for r in rows}
    assert by_code["CV350"] == by_code["CV349"] == "93" and by_code["CV357"] == "94"


def test_contrats_ville_build_cleans_codes_and_drops_ambiguous_points() -> None:
    """The ANCT file's dirty codes ("CV072\\r\\nCV072\\r\\n") are split, stripped and deduplicated;
    a point with two codes or a code on two places is dropped and said, never guessed."""
    assert clean_codes("CV047\r\n") == ["CV047"]
    assert clean_codes("CV072\r\nCV072\r\n") == ["CV072"]
    assert clean_codes("CV046\r\nCV137\r\n") == ["CV046", "CV137"]
    assert clean_codes(None) == []
    assert clean_name("93 - CA Est Ensemble") == "CA Est Ensemble"
    assert clean_name("NA - CA de Bastia") == "CA de Bastia"

    def feat(code: str, name: str, lon: float, lat: float, dep: str | None = None) -> dict:
        props = {"code_cv": code, "lib_cv": name, "insee_dep": dep}
        return {"properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}

    out, dropped = build(
        [
            feat("CV350\r\n", "93 - CA Est Ensemble", 2.444866, 48.887737, "93"),
            feat("CV350", "CA Est Ensemble", 2.444866, 48.887737),  # the same, once more
            feat("CV901\r\nCV902", "Paris", 2.343, 48.857),  # two codes: which one?
            feat("CV357", "CA Seine Amont", 2.398, 48.789),
            feat("CV357", "CA Autre", 2.46, 48.77),  # one code, two places
            feat("CV349", "CA Plaine Commune", 2.363, 48.935, "94"),  # point in the 93
            feat("CV001", "01 - CC de la Plaine de l'Ain", 5.26, 45.9, "01"),  # not IDF
        ]
    )
    assert [f["properties"] for f in out] == [
        {"code_cv": "CV350", "lib_cv": "CA Est Ensemble", "code_dep": "93", "codgeo": None}
    ]
    assert len(dropped) == 3
    assert any("2 codes" in d for d in dropped) and any("CV357" in d for d in dropped)
    assert any("CV349: point dans le 93" in d for d in dropped)
