"""What an SMTP refusal says, and the subscribers it proves gone.

``mark_bounces`` marks bounced the subscribers whose address the server
said does not exist, after a send.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from digest.models import Delivery, SubscriberStatus

if TYPE_CHECKING:  # the send stage sees the store only through what it is handed
    from digest.store import Store

#: A permanent refusal that says the mailbox does not exist (RFC 3463 5.1.x), not a policy block.
_NO_SUCH_MAILBOX = re.compile(
    r"\b5\.1\.[0-9]{1,3}\b|user unknown|unknown (user|recipient)|no such (user|mailbox|recipient)|does not exist",
    re.IGNORECASE,
)


def mark_bounces(store: Store, issue_key: str, now: dt.datetime) -> list[str]:
    """Mark subscribers bounced whose address the server said does not exist.

    Later issues skip them; a spam or policy refusal (also a 550) is not a bounce.
    """
    bounced = [
        row.email
        for row in store.deliveries(issue_key, Delivery.FAILED_PERMANENT)
        if row.last_code in (550, 551, 553) and _NO_SUCH_MAILBOX.search(row.last_error or "")
    ]
    for email in bounced:
        store.set_status(email, SubscriberStatus.BOUNCED, now, f"bounce: issue {issue_key}")
    return bounced
