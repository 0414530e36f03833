"""board indexes: each team's best, submissions in score order, a run's submissions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 18:40:00
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_submissions_team_best', 'submissions', ['challenge_id', 'team_id', 'primary_score', 'created_at', 'id'],
                    unique=False)
    op.create_index('ix_submissions_ranked', 'submissions', ['challenge_id', 'primary_score', 'created_at', 'id'],
                    unique=False)
    op.create_index(op.f('ix_submissions_run_id'), 'submissions', ['run_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_submissions_run_id'), table_name='submissions')
    op.drop_index('ix_submissions_ranked', table_name='submissions')
    op.drop_index('ix_submissions_team_best', table_name='submissions')
