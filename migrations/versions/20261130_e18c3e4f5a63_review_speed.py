"""H3: review page speed (issue 18): a digest of each review item's frozen row.

``review_item.seen_digest`` holds the SHA-256 of the item's ``seen`` copy without its
moment of observation and its analysis (a snapshot id fixes that), so a running week's
view compares one string per experiment instead of loading and re-serialising every
frozen copy. Existing rows are backfilled from their stored copy with the same rule as
:func:`experiments.review_rows.seen_digest` (written out here so this revision keeps its
meaning if that code changes); an empty copy keeps ``NULL``.

Revision ID: e18c3e4f5a63
Revises: e18a1c2d3f41
Create Date: 2026-11-30 10:00:00
"""
import hashlib
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e18c3e4f5a63'
down_revision: str | None = 'e18a1c2d3f41'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DIGEST_KEYS = ("verdict", "experiment", "plan", "analysis_plan", "amendments", "dataset",
               "snapshot_id", "computed_at", "review")

_item = sa.table("review_item", sa.column("id", sa.Integer), sa.column("seen", sa.JSON),
                 sa.column("seen_digest", sa.String))


def _digest(seen) -> str | None:
    if not isinstance(seen, dict) or not seen:
        return None
    part = {key: seen.get(key) for key in DIGEST_KEYS}
    text = json.dumps(part, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seen_digest", sa.String(length=64), nullable=True))

    bind = op.get_bind()
    last = 0
    while True:  # in batches: 52 weeks × hundreds of experiments are megabytes of JSON
        batch = bind.execute(sa.select(_item.c.id, _item.c.seen).where(_item.c.id > last)
                             .order_by(_item.c.id).limit(500)).all()
        if not batch:
            break
        for item_id, seen in batch:
            digest = _digest(seen)
            if digest is not None:
                bind.execute(_item.update().where(_item.c.id == item_id)
                             .values(seen_digest=digest))
        last = batch[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.drop_column("seen_digest")
