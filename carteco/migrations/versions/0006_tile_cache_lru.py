"""Tile cache evicts the least recently used tiles, not the oldest.

A hit refreshes `used_at` at most once per `touch_after_s` (tiles/cache.py), so a hot tile
costs one small write a minute, not one per request; eviction keeps the most recently used.

Revision ID: 0006_tile_cache_lru
Revises: 0005_tiles
Create Date: 2026-11-27
"""

from alembic import op

revision = "0006_tile_cache_lru"
down_revision = "0005_tiles"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE tile_cache ADD COLUMN used_at timestamptz;
        UPDATE tile_cache SET used_at = created_at;
        ALTER TABLE tile_cache ALTER COLUMN used_at SET NOT NULL,
                               ALTER COLUMN used_at SET DEFAULT clock_timestamp();
        DROP INDEX IF EXISTS tile_cache_created_idx;
        CREATE INDEX tile_cache_used_idx ON tile_cache (used_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS tile_cache_used_idx;
        ALTER TABLE tile_cache DROP COLUMN IF EXISTS used_at;
        CREATE INDEX IF NOT EXISTS tile_cache_created_idx ON tile_cache (created_at);
        """
    )
