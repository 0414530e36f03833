"""the Ladder (Blum and Hardt 2015): challenges.ladder_threshold, submissions.shown_score

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        # NULL: a plain board, as every challenge was before.
        batch_op.add_column(sa.Column('ladder_threshold', sa.Float(), nullable=True))
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        # The Ladder's public score, written with the row; NULL on a plain board.
        batch_op.add_column(sa.Column('shown_score', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_column('shown_score')
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_column('ladder_threshold')
