"""Where the time of one message goes on the send path, in microseconds.

``python -m bench.send_profile FOLDER --count N`` (run by ``python -m bench``
as a child, like the other send measurements) freezes the workload's issue
and times, on one thread and one at a time, each stage that
``pipeline.send_issue`` runs per message:

* ``recipient``: the subscriber's signed unsubscribe and preferences links
  (``pipeline.recipients``: two tokens);
* ``personalise``: ``MessageTemplate.personalise`` (headers and the two
  spliced quoted-printable bodies);
* ``claim``: ``Store.claim_next`` on the real SQLite ledger, carrying the
  previous message's ``sent`` mark (one commit, uncontended);
* ``smtp``: ``SmtpSession.deliver`` to the sink over one reused
  connection (pipelined MAIL/RCPT/DATA, the bytes, the final reply);
* ``raw smtp``: the same transaction for pre-built bytes, as the raw limit
  sends them (the floor of ``smtp``).

It prints one JSON line: microseconds per message for each stage (medians
of 5 rounds of ``N / 5`` messages).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from bench.workload import WEEK


def _per_message(rounds: list[list[Callable[[], object]]]) -> float:
    """Median over rounds of the microseconds per call."""
    out = []
    for calls in rounds:
        start = time.perf_counter()
        for call in calls:
            call()
        out.append((time.perf_counter() - start) / len(calls) * 1e6)
    return statistics.median(out)


def measure(folder: Path, count: int) -> dict[str, float]:
    import smtplib
    import ssl

    from digest import pipeline
    from digest.compose import MessageTemplate
    from digest.config import load_config
    from digest.models import IsoWeek
    from digest.send.session import SmtpSession

    config = load_config(folder / "digest.toml")
    store = pipeline.open_store(config)
    now = dt.datetime.now(dt.UTC)
    built = pipeline.prepare(config, store, [IsoWeek.parse(WEEK)], now)
    key = built.issue.key
    people = [s for s, v in built.audience.assignments if v][:count]
    store.plan_deliveries(key, [(s.email, "all") for s in people], now)
    settings = pipeline.compose_settings(config, built.date)
    template = MessageTemplate.build(built.variants["all"], settings)
    make_recipient = pipeline.recipients(config, strict=True)
    recipients = [make_recipient(s) for s in people]
    messages = [template.personalise(r) for r in recipients]
    size = max(1, len(people) // 5)
    slices = [range(i, min(i + size, len(people))) for i in range(0, len(people), size)][:5]

    figures: dict[str, float] = {}
    figures["recipient"] = _per_message([[lambda i=i: make_recipient(people[i]) for i in r] for r in slices])
    personal = [[lambda i=i: template.personalise(recipients[i]) for i in r] for r in slices]
    figures["personalise"] = _per_message(personal)

    def claim(i: int) -> None:
        sent = [people[i - 1].email] if i else []
        if not store.claim_next(key, people[i].email, dt.datetime.now(dt.UTC), sent=sent):
            raise RuntimeError(f"{people[i].email}: not claimed")

    figures["claim"] = _per_message([[lambda i=i: claim(i) for i in r] for r in slices])

    session = SmtpSession(config.sender, b"digest@example.org", "example.org", ssl.create_default_context())
    figures["smtp"] = _per_message([[lambda i=i: session.deliver(messages[i]) for i in r] for r in slices])
    session.quit()

    payload = re.sub(rb"(?m)^\.", b"..", messages[0].data) + b".\r\n"
    client = smtplib.SMTP(config.sender.host, config.sender.port, local_hostname="example.org")
    client.ehlo()

    def raw(i: int) -> None:
        client.send(b"MAIL FROM:<digest@example.org>\r\nRCPT TO:<reader%07d@example.org>\r\nDATA\r\n" % i)
        for _ in range(3):
            client.getreply()
        client.send(payload)
        client.getreply()

    figures["raw smtp"] = _per_message([[lambda i=i: raw(i) for i in r] for r in slices])
    client.quit()
    store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description="per-message cost of each send stage (a child of python -m bench)")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    print(json.dumps(measure(args.folder, args.count)), flush=True)


if __name__ == "__main__":
    main()
