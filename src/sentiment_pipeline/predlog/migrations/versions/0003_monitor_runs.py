"""Each `sentiment-pipeline monitor` run: its status, window and every check's value and
threshold, for the dashboard's drift history.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("window_first", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_newest", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window", sa.JSON, nullable=False),
        sa.Column("checks", sa.JSON, nullable=False),
    )
    op.create_index("ix_monitor_runs_created_at", "monitor_runs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_monitor_runs_created_at", "monitor_runs")
    op.drop_table("monitor_runs")
