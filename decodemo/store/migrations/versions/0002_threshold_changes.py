"""Threshold changes applied from reviews, and an index for the reviewer filter.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "threshold_changes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_name", sa.String(128), nullable=False, index=True),
        sa.Column("old_threshold", sa.Float, nullable=False),
        sa.Column("new_threshold", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_reviews_reviewer", "reviews", ["reviewer"])


def downgrade() -> None:
    op.drop_index("ix_reviews_reviewer", table_name="reviews")
    op.drop_table("threshold_changes")
