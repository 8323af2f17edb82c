"""``pipeline.batches`` in one process: planning into batches, and sending a given list of rows.

A real SQLite store, the real SMTP sender and the aiosmtpd server on
loopback; the queue is a plain list (the ``BatchQueue`` seam).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from digest import pipeline
from digest.errors import SendError
from digest.models import Delivery, IsoWeek
from digest.pipeline.batches import BatchSender, cut, plan_batches
from digest.send import make_sender
from tests.data.send import workers as wk
from tests.data.send import workspace as ws
from tests.fixtures.smtp_server import SmtpServer

W02 = (IsoWeek(2018, 2),)


class ListQueue:
    """A ``BatchQueue`` that keeps what it is given."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, ...]] = []

    def active(self, issue_key: str) -> int:
        return len(self.batches)

    def put(self, issue_key: str, batches: Sequence[tuple[str, ...]]) -> int:
        self.batches.extend(batches)
        return len(batches)


def test_cut_keeps_order_and_sizes() -> None:
    assert cut(["a", "b", "c", "d", "e"], 2) == [("a", "b"), ("c", "d"), ("e",)]
    assert cut([], 3) == []
    assert cut(["a"], 0) == [("a",)]  # a size below 1 is one per batch, never a loop forever


def _folder(tmp_path: Path, port: int, n: int, batch: int) -> Path:
    path = ws.make_folder(tmp_path, wk.people(n), port=port, extra=f"\n[workers]\nbatch_size = {batch}\n")
    ws.fetch(path)
    return path


def test_plan_batches_queues_every_due_row_once(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(_folder(tmp_path, smtp_server.port, 25, 10))
    queue = ListQueue()
    with pipeline.open_store(config) as store:
        first = plan_batches(config, store, W02, queue, clock=ws.fixed_clock())
        again = plan_batches(config, store, W02, queue, clock=ws.fixed_clock())
        assert store.delivery_counts("2018-W02")[Delivery.PENDING] == 25
    assert (first.planned, first.due, first.queued, first.already_queued) == (25, 25, 3, 0)
    assert [len(b) for b in queue.batches] == [10, 10, 5]
    assert sorted(e for b in queue.batches for e in b) == [p.email for p in wk.people(25)]
    assert (again.planned, again.queued, again.already_queued) == (0, 0, 3)  # queued already: nothing more
    assert len(smtp_server.messages) == 0  # planning sends nothing


def test_a_batch_sends_only_its_planned_rows_and_never_twice(tmp_path: Path, smtp_server: SmtpServer) -> None:
    config = ws.load(_folder(tmp_path, smtp_server.port, 30, 100))
    with pipeline.open_store(config) as store:
        plan_batches(config, store, W02, ListQueue(), clock=ws.fixed_clock())
        batch = [p.email for p in wk.people(30)][:20]
        # Hostile job arguments: an address the issue never planned, another spelling, a repeat.
        hostile = [*batch, "intruder@example.org", batch[0].upper(), batch[1]]
        sender = BatchSender(config, store, "2018-W02", ws.RUN_NOW)
        reports = []
        threads = [
            threading.Thread(
                target=lambda: reports.append(
                    sender.send(store, hostile, make_sender(config.sender), clock=ws.fixed_clock())
                )
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        again = sender.send(store, batch, make_sender(config.sender), clock=ws.fixed_clock())
        counts = store.delivery_counts("2018-W02")
    got = ws.per_recipient(smtp_server.messages)
    assert set(got) == set(batch) and set(got.values()) == {1}
    assert sum(r.sent for r in reports) == 20
    assert again.sent == again.attempts == 0
    assert (counts[Delivery.SENT], counts[Delivery.PENDING]) == (20, 10)


@pytest.mark.parametrize("key", ["2018-W03", "../../etc", "2018-W02; DROP TABLE deliveries", ""])
def test_a_batch_for_an_issue_never_frozen_is_refused(tmp_path: Path, smtp_server: SmtpServer, key: str) -> None:
    config = ws.load(_folder(tmp_path, smtp_server.port, 3, 10))
    with pipeline.open_store(config) as store:
        plan_batches(config, store, W02, ListQueue(), clock=ws.fixed_clock())
        with pytest.raises(SendError) as err:
            BatchSender(config, store, key, ws.RUN_NOW)
        assert store.frozen_issue("2018-W03") is None  # nothing frozen on a job's say-so
    assert err.value.permanent
    assert len(smtp_server.messages) == 0
