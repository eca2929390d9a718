"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-24 06:28:38.085191
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

# 64-bit sizes and mtimes: BIGINT on PostgreSQL; on SQLite exactly the INTEGER this migration always
# made (its INTEGER holds 64 bits), so SQLite databases made before and after are the same.
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('bundle_info',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('contents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('duration', sa.Float(), nullable=True),
    sa.Column('transcript', sa.Text(), nullable=True),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('contents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contents_content_hash'), ['content_hash'], unique=True)
        batch_op.create_index(batch_op.f('ix_contents_kind'), ['kind'], unique=False)

    op.create_table('skipped',
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('size', INT64, nullable=False),
    sa.Column('mtime_ns', INT64, nullable=False),
    sa.Column('skipped_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('path')
    )
    op.create_table('files',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('content_id', sa.Integer(), nullable=False),
    sa.Column('size', INT64, nullable=False),
    sa.Column('mtime_ns', INT64, nullable=False),
    sa.Column('indexed_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['content_id'], ['contents.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('path')
    )
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_files_content_id'), ['content_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_files_content_id'))

    op.drop_table('files')
    op.drop_table('skipped')
    with op.batch_alter_table('contents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contents_kind'))
        batch_op.drop_index(batch_op.f('ix_contents_content_hash'))

    op.drop_table('contents')
    op.drop_table('bundle_info')
