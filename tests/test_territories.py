"""Territory tagging computed in the database, and the reference-data loader."""

import sqlalchemy as sa

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
