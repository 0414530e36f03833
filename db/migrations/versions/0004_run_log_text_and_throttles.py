"""run logs as data (runs.log_text); failed-attempt throttles shared by every server process

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 18:40:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('runs', sa.Column('log_text', sa.Text(), nullable=True))
    op.create_table(
        'throttles',
        sa.Column('scope', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=128), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('scope', 'key'),
    )


def downgrade() -> None:
    op.drop_table('throttles')
    op.drop_column('runs', 'log_text')
