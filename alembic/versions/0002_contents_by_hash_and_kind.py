"""contents keyed by (hash, kind); a warning per content

Identical bytes under an image name and an audio name were one content, decoded as the first
path's kind; now each kind is its own content. `warning` records what was indexed only in part.

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_contents_content_hash", table_name="contents")
    op.create_index("ix_contents_content_hash", "contents", ["content_hash"], unique=False)
    op.create_index("ux_contents_hash_kind", "contents", ["content_hash", "kind"], unique=True)
    op.add_column("contents", sa.Column("warning", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contents") as batch_op:
        batch_op.drop_column("warning")
    op.drop_index("ux_contents_hash_kind", table_name="contents")
    op.drop_index("ix_contents_content_hash", table_name="contents")
    op.create_index("ix_contents_content_hash", "contents", ["content_hash"], unique=True)
