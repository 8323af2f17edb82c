"""Frozen issues: the exact rendered variants of an issue, kept before sending.

An issue is frozen once, before its first message goes out, so a run that
resumes after a crash sends the very same subject and body even if entries
or templates changed in between. Freezing again keeps the first.

The freeze also records, in the same transaction, which entries the issue
carried (``issue_entries``; see ``store.carried``): a crash leaves the issue
and its record both or neither.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, select, update

from digest.errors import StoreError
from digest.models import Rendered, TokenSet
from digest.placeholders import tokens_from_json, tokens_to_json
from digest.store.base import StoreBase, chunked, upsert_into
from digest.store.schema import held_issues as t_held
from digest.store.schema import issue_entries as t_issue_entries
from digest.store.schema import issues as t_issues
from digest.store.schema import utc_text
from digest.store.schema import variants as t_variants


@dataclass(frozen=True, slots=True)
class FrozenIssue:
    """An issue as it was frozen; ``payload`` is the caller's own JSON."""

    key: str
    payload: str
    variants: tuple[Rendered, ...]
    frozen_at: dt.datetime

    def variant(self, name: str) -> Rendered | None:
        """The variant called ``name``, if there is one."""
        return next((v for v in self.variants if v.variant == name), None)


@dataclass(frozen=True, slots=True)
class IssueEntry:
    """One entry an issue records at its freeze.

    ``carried_from`` is the entry's own week (``"2018-W02"``) when a later
    week's issue carries it; ``expired`` marks an entry too old to carry,
    recorded so it is reported once and never carried later; ``content_hash``
    is the entry's hash as shown. ``updated`` marks an entry sent earlier
    that this issue shows again under "Updated": its row moves to the new
    hash and names this issue in ``updated_in``.
    """

    entry_id: str
    content_hash: str
    carried_from: str | None = None
    expired: bool = False
    updated: bool = False


class IssuesMixin(StoreBase):
    """Freezing issues and reading them back."""

    def freeze_issue(
        self,
        key: str,
        payload: str,
        variants: Sequence[Rendered],
        now: dt.datetime,
        entries: Sequence[IssueEntry] = (),
    ) -> bool:
        """Keep ``payload``, ``variants`` and ``entries`` under ``key``; False if it was frozen already.

        The first freeze wins: a later call changes nothing. The variants come
        back from ``frozen_issue`` in the order given here. ``entries`` go into
        ``issue_entries`` in the same transaction; an entry another issue
        already recorded makes the whole freeze fail (``StoreError``), so no
        entry is ever in two issues. A held record of ``key`` is dropped.
        """
        utc_text(now)
        names = [v.variant for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"issue {key}: variant names repeat: {names}")
        with self._write() as conn:
            stmt = upsert_into(conn, t_issues).values(key=key, payload=payload, frozen_at=now)
            added = stmt.on_conflict_do_nothing(index_elements=[t_issues.c.key]).returning(t_issues.c.key)
            # RETURNING, not rowcount: psycopg reports -1 for this statement.
            if conn.execute(added).first() is None:
                return False
            if variants:
                conn.execute(
                    t_variants.insert(),
                    [
                        {
                            "issue_key": key,
                            "variant": v.variant,
                            "position": i,
                            "themes": json.dumps(list(v.themes), ensure_ascii=False),
                            "subject": v.subject,
                            "html": v.html,
                            "text": v.text,
                            "tokens": tokens_to_json(v.tokens),
                        }
                        for i, v in enumerate(variants)
                    ],
                )
            self._record_entries(conn, key, entries)
            conn.execute(t_held.delete().where(t_held.c.key == key))
        return True

    def _record_entries(self, conn: Connection, key: str, entries: Sequence[IssueEntry]) -> None:
        fresh = [e for e in entries if not e.updated]
        for batch in chunked(fresh, 2000):
            # A plain INSERT: a row another issue holds is a primary-key violation, which rolls the freeze back.
            conn.execute(
                t_issue_entries.insert(),
                [
                    {
                        "entry_id": e.entry_id,
                        "issue_key": key,
                        "expired": e.expired,
                        "carried_from": e.carried_from,
                        "content_hash": e.content_hash,
                        "updated_in": None,
                    }
                    for e in batch
                ],
            )
        c = t_issue_entries.c
        for e in entries:
            if e.updated:
                conn.execute(
                    update(t_issue_entries)
                    .where(c.entry_id == e.entry_id, c.expired.is_(False))
                    .values(content_hash=e.content_hash, updated_in=key)
                )

    def add_variants(self, key: str, variants: Sequence[Rendered]) -> int:
        """Store variants a frozen issue lacks (a subscriber who joined after the freeze).

        Variants already stored are kept as they are: the first rendering wins.
        Returns how many were added.
        """
        with self._write() as conn:
            if conn.execute(select(t_issues.c.key).where(t_issues.c.key == key)).first() is None:
                raise ValueError(f"issue {key} is not frozen")
            have = {
                row.variant: row.position
                for row in conn.execute(
                    select(t_variants.c.variant, t_variants.c.position).where(t_variants.c.issue_key == key)
                )
            }
            fresh = [v for v in dict((v.variant, v) for v in variants).values() if v.variant not in have]
            start = max(have.values(), default=-1) + 1
            for i, v in enumerate(fresh):
                stmt = upsert_into(conn, t_variants).values(
                    issue_key=key,
                    variant=v.variant,
                    position=start + i,
                    themes=json.dumps(list(v.themes), ensure_ascii=False),
                    subject=v.subject,
                    html=v.html,
                    text=v.text,
                    tokens=tokens_to_json(v.tokens),
                )
                conn.execute(stmt.on_conflict_do_nothing(index_elements=[t_variants.c.issue_key, t_variants.c.variant]))
        return len(fresh)

    def frozen_issue(self, key: str) -> FrozenIssue | None:
        """The issue frozen under ``key``, or None."""
        with self._read() as conn:
            head = conn.execute(select(t_issues).where(t_issues.c.key == key)).first()
            if head is None:
                return None
            rows = conn.execute(
                select(t_variants).where(t_variants.c.issue_key == key).order_by(t_variants.c.position)
            ).all()
        rendered = tuple(
            Rendered(
                issue_key=key,
                variant=r.variant,
                themes=tuple(json.loads(r.themes)),
                subject=r.subject,
                html=r.html,
                text=r.text,
                tokens=_tokens(key, r.variant, r.tokens),
            )
            for r in rows
        )
        return FrozenIssue(key=key, payload=head.payload, variants=rendered, frozen_at=head.frozen_at)


def _tokens(key: str, variant: str, raw: str | None) -> TokenSet:
    """The stored token set of a variant; a missing or damaged one is a store error, never a guess."""
    try:
        if raw is None:
            raise ValueError("none recorded")
        return tokens_from_json(raw)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise StoreError(f"issue {key} ({variant}): bad placeholder tokens in the store: {exc}") from exc
