"""Needs survey: a land need declared on the public form is a proposal of kind `land_need`.

It waits in the one moderation queue with the contributions; once approved it is written into
`land_needs` (source `enquete-besoins`), where the land diagnostics read it.

Revision ID: 0023_needs_survey
Revises: 0021_bulk_speed
Create Date: 2026-12-01
"""

from alembic import op

revision = "0023_needs_survey"
down_revision = "0021_bulk_speed"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Allow the `land_need` proposal kind."""
    op.execute(
        """
        ALTER TABLE proposals DROP CONSTRAINT proposals_kind_check,
            ADD CONSTRAINT proposals_kind_check
                CHECK (kind IN ('create', 'update', 'close', 'land_need'))
        """
    )


def downgrade() -> None:
    """Drop the survey's proposals (their approved needs stay in land_needs)."""
    op.execute("DELETE FROM proposals WHERE kind = 'land_need'")
    op.execute(
        """
        ALTER TABLE proposals DROP CONSTRAINT proposals_kind_check,
            ADD CONSTRAINT proposals_kind_check CHECK (kind IN ('create', 'update', 'close'))
        """
    )
