"""Which worker holds each batch of the workers' queue, for ``digest status``.

A ``digest worker`` records its name (``host:pid``) against the job id of
each batch when it starts it and drops the row when the batch ends; a row
left behind names the worker that died holding the batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import delete, select

from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.schema import batch_holders as t_holders


class HoldersMixin(StoreBase):
    """Record and read the worker that holds a batch job."""

    def hold_batch(self, job_id: int, worker: str, issue_key: str, now: dt.datetime) -> None:
        """``worker`` runs the batch job ``job_id`` now (a re-run by another worker takes the row over)."""
        with self._write() as conn:
            stmt = upsert_into(conn, t_holders).values(job_id=job_id, worker=worker, issue_key=issue_key, since=now)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=[t_holders.c.job_id], set_={"worker": worker, "since": now})
            )

    def release_batch(self, job_id: int) -> None:
        """The batch job ended (sent, or given back to the queue)."""
        with self._write() as conn:
            conn.execute(delete(t_holders).where(t_holders.c.job_id == job_id))

    def batch_holders(self, job_ids: Iterable[int]) -> dict[int, tuple[str, dt.datetime]]:
        """``job_id → (worker, since)`` for those of ``job_ids`` a worker holds or held when it died."""
        out: dict[int, tuple[str, dt.datetime]] = {}
        with self._read() as conn:
            for batch in chunked(sorted(set(job_ids)), 500):
                query = select(t_holders.c.job_id, t_holders.c.worker, t_holders.c.since).where(
                    t_holders.c.job_id.in_(list(batch))
                )
                out.update({int(j): (w, since) for j, w, since in conn.execute(query)})
        return out
