"""Vector tiles: MVT from PostGIS, cache and PMTiles export."""
