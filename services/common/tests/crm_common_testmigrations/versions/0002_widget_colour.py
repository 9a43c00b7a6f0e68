"""widgets get a colour

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("widgets", sa.Column("colour", sa.String(20), nullable=True))


def downgrade():
    with op.batch_alter_table("widgets") as batch:
        batch.drop_column("colour")
