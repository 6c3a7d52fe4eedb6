"""PMTiles export: the archive opens with the pmtiles reader and holds the live endpoint's tiles."""

from __future__ import annotations

import gzip
import subprocess
import sys

import mapbox_vector_tile
import morecantile
import sqlalchemy as sa
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType

from tiles.layers import LAYERS
from tiles.mvt import render_tile

TMS = morecantile.tms.get("WebMercatorQuad")


def test_export_reads_back(demo_data: sa.Engine, tmp_path) -> None:
    from tiles.export import export_pmtiles

    out = tmp_path / "carteco.pmtiles"
    seen = []
    report = export_pmtiles(
        demo_data, out, 0, 6, ("structures", "departements"), progress=lambda d, t: seen.append(d)
    )
    assert report.tiles > 0 and seen and seen[-1] == report.tiles + report.empty_skipped
    with out.open("rb") as f:
        reader = Reader(MmapSource(f))
        header = reader.header()
        assert header["tile_type"] == TileType.MVT
        assert header["tile_compression"] == Compression.GZIP
        assert (header["min_zoom"], header["max_zoom"]) == (0, 6)
        meta = reader.metadata()
        assert [v["id"] for v in meta["vector_layers"]] == ["structures", "departements"]
        tiles = {zxy: data for zxy, data in all_tiles(reader.get_bytes)}
        assert len(tiles) == report.tiles
        # The Paris tile at z6 holds both layers, with the same structures as the endpoint.
        t = TMS.tile(2.35, 48.86, 6)
        data = gzip.decompress(reader.get(6, t.x, t.y))
        layers = mapbox_vector_tile.decode(data)
        assert {"structures", "departements"} <= set(layers)
        with demo_data.connect() as conn:
            live = mapbox_vector_tile.decode(render_tile(conn, LAYERS["structures"], 6, t.x, t.y))
            (located,) = conn.execute(
                sa.text("SELECT count(*) FROM structures WHERE geom IS NOT NULL")
            ).one()
        assert sorted(f["properties"]["count"] for f in layers["structures"]["features"]) == sorted(
            f["properties"]["count"] for f in live["structures"]["features"]
        )
        # Every structure is in the single z0 tile.
        z0 = mapbox_vector_tile.decode(gzip.decompress(reader.get(0, 0, 0)))
        assert sum(f["properties"]["count"] for f in z0["structures"]["features"]) == located


def test_cli_export_with_filter(demo_data: sa.Engine, settings, tmp_path) -> None:
    out = tmp_path / "alim.pmtiles"
    env = {
        "CARTECO_DATABASE_URL": settings.database_url,
        "CARTECO_DATA_DIR": str(settings.data_dir),
        "PATH": "/usr/bin:/bin",
    }
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "carteco.cli",
            "tiles",
            "export",
            str(out),
            "--maxzoom",
            "5",
            "--layers",
            "structures",
            "--secteur",
            "alimentation",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "tuiles" in r.stdout
    with out.open("rb") as f:
        reader = Reader(MmapSource(f))
        z0 = mapbox_vector_tile.decode(gzip.decompress(reader.get(0, 0, 0)))
    with demo_data.connect() as conn:
        (n,) = conn.execute(
            sa.text(
                "SELECT count(*) FROM structures WHERE geom IS NOT NULL AND EXISTS "
                "(SELECT 1 FROM unnest(sectors) x WHERE x LIKE 'alimentation%')"
            )
        ).one()
    assert sum(f["properties"]["count"] for f in z0["structures"]["features"]) == n
    bad = subprocess.run(
        [sys.executable, "-m", "carteco.cli", "tiles", "export", str(out), "--secteur", "zz"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 1 and "secteur inconnu" in bad.stderr
