"""entries: a submission's description and code URL; the index that finds a team's earlier upload of a file

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('description', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('code_url', sa.String(length=512), nullable=True))
        batch_op.create_index('ix_submissions_file', ['challenge_id', 'team_id', 'file_sha256'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index('ix_submissions_file')
        batch_op.drop_column('code_url')
        batch_op.drop_column('description')
