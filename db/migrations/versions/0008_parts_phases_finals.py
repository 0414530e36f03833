"""public/private parts, phases, final selections: held_labels.part, private_scores, phases, final_selections

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        # Rows from before the split: all public, as they were scored.
        batch_op.add_column(sa.Column('public_fraction', sa.Float(), server_default='1.0', nullable=False))
        batch_op.add_column(sa.Column('final_count', sa.Integer(), server_default='2', nullable=False))
    with op.batch_alter_table('held_labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('part', sa.String(length=8), nullable=True))
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('private_score', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('private_scores', sa.JSON(), nullable=True))
    op.create_table(
        'private_scores',
        sa.Column('submission_id', sa.Integer(), nullable=False),
        sa.Column('primary_score', sa.Float(), nullable=False),
        sa.Column('scores', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('submission_id'),
    )
    op.create_table(
        'phases',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('challenge_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('quota', sa.Integer(), nullable=False),
        sa.Column('window_days', sa.Float(), nullable=False),
        sa.Column('per_day', sa.Integer(), nullable=True),
        sa.Column('total', sa.Integer(), nullable=True),
        sa.Column('visibility', sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('challenge_id', 'name', name='uq_phases_name'),
    )
    with op.batch_alter_table('phases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phases_challenge_id'), ['challenge_id'], unique=False)
    op.create_table(
        'final_selections',
        sa.Column('submission_id', sa.Integer(), nullable=False),
        sa.Column('challenge_id', sa.Integer(), nullable=False),
        sa.Column('team_id', sa.Integer(), nullable=False),
        sa.Column('chosen_by', sa.String(length=8), nullable=False),
        sa.Column('selected_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['team_id'], ['teams.id']),
        sa.PrimaryKeyConstraint('submission_id'),
    )
    with op.batch_alter_table('final_selections', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_final_selections_challenge_id'), ['challenge_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('final_selections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_final_selections_challenge_id'))
    op.drop_table('final_selections')
    with op.batch_alter_table('phases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phases_challenge_id'))
    op.drop_table('phases')
    op.drop_table('private_scores')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_column('private_scores')
        batch_op.drop_column('private_score')
    with op.batch_alter_table('held_labels', schema=None) as batch_op:
        batch_op.drop_column('part')
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_column('final_count')
        batch_op.drop_column('public_fraction')
