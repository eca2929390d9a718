"""moments: long recordings split into speech regions, each embedded on its own (the "moment" store)

Recordings indexed before this revision have no moments: they are searched by their whole-file
vectors, as before, until they are indexed again (a changed file, or `index --rebuild`).

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("content_id", sa.Integer(), sa.ForeignKey("contents.id"), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sqlite_autoincrement=True,  # a deleted moment's id (its FAISS id) is never handed out again
    )
    op.create_index("ix_moments_content_id", "moments", ["content_id"])


def downgrade() -> None:
    op.drop_index("ix_moments_content_id", table_name="moments")
    op.drop_table("moments")
