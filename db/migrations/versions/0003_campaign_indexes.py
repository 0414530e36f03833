"""campaign indexes: jobs per suite and state, jobs newest first

ix_runs_suite_state replaces ix_runs_suite, a prefix of it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:00:00
"""
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_runs_suite_state', 'runs', ['suite', 'state'], unique=False)
    op.create_index('ix_runs_created', 'runs', ['created_at'], unique=False)
    op.drop_index('ix_runs_suite', table_name='runs')


def downgrade() -> None:
    op.create_index('ix_runs_suite', 'runs', ['suite'], unique=False)
    op.drop_index('ix_runs_created', table_name='runs')
    op.drop_index('ix_runs_suite_state', table_name='runs')
