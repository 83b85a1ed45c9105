"""Who asked (the API key's id on predictions and feedback), and an id per feedback row so the
spool can ship it again without duplicating it.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("predictions", sa.Column("key_id", sa.String(32), nullable=True))
    op.create_index("ix_predictions_key_id", "predictions", ["key_id"])
    op.add_column("feedback", sa.Column("feedback_id", sa.String(32), nullable=True))
    op.add_column("feedback", sa.Column("key_id", sa.String(32), nullable=True))
    # a unique index, not a constraint: SQLite adds it without rebuilding the table, and both
    # databases take it as the target of ON CONFLICT (feedback_id) DO NOTHING
    op.create_index("ix_feedback_feedback_id", "feedback", ["feedback_id"], unique=True)
    op.create_index("ix_feedback_key_id", "feedback", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_key_id", "feedback")
    op.drop_index("ix_feedback_feedback_id", "feedback")
    op.drop_column("feedback", "key_id")
    op.drop_column("feedback", "feedback_id")
    op.drop_index("ix_predictions_key_id", "predictions")
    op.drop_column("predictions", "key_id")
