"""Frozen issues: the exact rendered variants of an issue, kept before sending.

An issue is frozen once, before its first message goes out, so a run that
resumes after a crash sends the very same subject and body even if entries
or templates changed in between. Freezing again keeps the first.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from digest.errors import StoreError
from digest.models import Rendered, TokenSet
from digest.placeholders import tokens_from_json, tokens_to_json
from digest.store.base import StoreBase, upsert_into
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


class IssuesMixin(StoreBase):
    """Freezing issues and reading them back."""

    def freeze_issue(self, key: str, payload: str, variants: Sequence[Rendered], now: dt.datetime) -> bool:
        """Keep ``payload`` and ``variants`` under ``key``; False if it was frozen already.

        The first freeze wins: a later call changes nothing. The variants come
        back from ``frozen_issue`` in the order given here.
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
        return True

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
