"""Initial schema: runs, metrics, samples.

Revision ID: 0001
Revises:
Created: 2025-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the runs, metrics and samples tables with their indexes."""
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model", sa.String(512), nullable=False),
        sa.Column("suite", sa.String(255), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(64), nullable=False),
        sa.Column("git_sha", sa.String(64), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("output_dir", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index(op.f("ix_runs_kind_model_suite"), "runs", ["kind", "model", "suite"])

    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("metric", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("higher_is_better", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "run_id", "suite", "metric", "step", name=op.f("uq_metrics_run_id_suite_metric_step")
        ),
    )
    op.create_index(op.f("ix_metrics_run_id"), "metrics", ["run_id"])
    op.create_index(op.f("ix_metrics_suite_metric"), "metrics", ["suite", "metric"])

    op.create_table(
        "samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("suite", sa.String(255), nullable=False),
        sa.Column("prompt_id", sa.String(255), nullable=False),
        sa.Column("sample_index", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("image_path", sa.Text(), nullable=True),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_samples_run_id_runs"), ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "run_id",
            "suite",
            "prompt_id",
            "sample_index",
            name=op.f("uq_samples_run_id_suite_prompt_id_sample_index"),
        ),
    )
    op.create_index(op.f("ix_samples_run_id"), "samples", ["run_id"])


def downgrade() -> None:
    """Drop everything the initial revision created."""
    op.drop_index(op.f("ix_samples_run_id"), table_name="samples")
    op.drop_table("samples")
    op.drop_index(op.f("ix_metrics_suite_metric"), table_name="metrics")
    op.drop_index(op.f("ix_metrics_run_id"), table_name="metrics")
    op.drop_table("metrics")
    op.drop_index(op.f("ix_runs_kind_model_suite"), table_name="runs")
    op.drop_table("runs")
