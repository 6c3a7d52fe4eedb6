"""Bulk imports: per-row triggers that a bulk import can stand in for.

The bulk import path (carteco.importer.bulk) tags structures and bumps their version with
set-based statements in its own transaction, where it sets `carteco.bulk_import = on`
(SET LOCAL). The two per-row triggers are then skipped by their WHEN condition, evaluated
without calling any function; every other writer still goes through them. The statement-level
tile triggers are unchanged.

Revision ID: 0020_bulk_import
Revises: 0019_duplicates
Create Date: 2026-12-01
"""

from alembic import op

revision = "0020_bulk_import"
down_revision = "0019_duplicates"
branch_labels = None
depends_on = None

_WHEN = "WHEN (current_setting('carteco.bulk_import', true) IS DISTINCT FROM 'on')"


def upgrade() -> None:
    """Per-row triggers skippable by a bulk import."""
    op.execute(
        f"""
        DROP TRIGGER structures_tag ON structures;
        CREATE TRIGGER structures_tag BEFORE INSERT OR UPDATE OF geom ON structures
            FOR EACH ROW {_WHEN} EXECUTE FUNCTION carteco_tag_structure();
        DROP TRIGGER structures_touch ON structures;
        CREATE TRIGGER structures_touch BEFORE UPDATE ON structures
            FOR EACH ROW {_WHEN} EXECUTE FUNCTION carteco_touch_structure();
        """
    )


def downgrade() -> None:
    """Back to unconditional per-row triggers."""
    op.execute(
        """
        DROP TRIGGER structures_tag ON structures;
        CREATE TRIGGER structures_tag BEFORE INSERT OR UPDATE OF geom ON structures
            FOR EACH ROW EXECUTE FUNCTION carteco_tag_structure();
        DROP TRIGGER structures_touch ON structures;
        CREATE TRIGGER structures_touch BEFORE UPDATE ON structures
            FOR EACH ROW EXECUTE FUNCTION carteco_touch_structure();
        """
    )
