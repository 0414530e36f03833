"""challenge kits: the test images a participant downloads (kit_images), open-book and closed challenges

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        # Existing challenges were created from a dataset's test split, whose labels follow from public code or
        # paths: they are open-book until re-created from private labels.
        batch_op.add_column(sa.Column('open_book', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('kit_sha256', sa.String(length=64), nullable=True))
    op.create_table(
        'kit_images',
        sa.Column('challenge_id', sa.Integer(), nullable=False),
        sa.Column('image_id', sa.String(length=64), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('filename', sa.String(length=128), nullable=False),
        sa.Column('media_type', sa.String(length=32), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['challenge_id'], ['challenges.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('challenge_id', 'image_id'),
        sa.UniqueConstraint('challenge_id', 'position', name='uq_kit_images_position'),
    )


def downgrade() -> None:
    op.drop_table('kit_images')
    with op.batch_alter_table('challenges', schema=None) as batch_op:
        batch_op.drop_column('kit_sha256')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('open_book')
