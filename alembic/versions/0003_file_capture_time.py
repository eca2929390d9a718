"""files.captured_at: when a photo was taken (EXIF DateTimeOriginal), for searches by date

Rows indexed before this revision keep NULL; date filters fall back to the file's mtime for them
(and for every file whose metadata names no capture time).

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("files", sa.Column("captured_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch_op:
        batch_op.drop_column("captured_at")
