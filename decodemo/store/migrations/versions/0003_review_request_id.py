"""A client's request id on review versions, unique per reviewer (idempotent review writes).

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
    # batch: SQLite cannot add a constraint to a table in place, so Alembic copies the table
    # (rows, indexes and the other constraints kept); PostgreSQL alters it directly
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("request_id", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_review_request", ["reviewer", "request_id"])


def downgrade() -> None:
    with op.batch_alter_table("reviews") as batch:
        batch.drop_constraint("uq_review_request", type_="unique")
        batch.drop_column("request_id")
