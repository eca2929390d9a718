"""contents.text_vector: a recording's transcript through the text tower, for the "transcript" store

Rows indexed before this revision keep NULL: their recordings are reached through their speech
vectors only, until they are indexed again.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("contents", sa.Column("text_vector", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+): batch mode would copy and drop `contents`, which the files'
    # foreign keys forbid.
    op.drop_column("contents", "text_vector")
