"""Stable entry ids: the same item gets the same id on every fetch.

An id is chosen from the first trustworthy of:

1. the source's own guid. A guid that is an http(s) URL is used in
   canonical form, fragment kept (it may be what tells entries apart); any other
   guid is namespaced as ``"<source>:guid:<guid>"``. A guid is not trusted
   when it is blank, generic ("1", "null", the feed's own address), or
   shared by two entries of the same fetch.
2. the entry's link in canonical form (``digest.urls.canonical``, also
   exported here as ``canonical_url``): lower-case scheme and host, default
   port dropped, tracking parameters (``utm_*``, ``fbclid``, ``gclid``, …)
   and the fragment dropped, the query sorted.
   Not used when two entries of one fetch share it (a page that links every
   item to itself).
3. a content hash: ``"<source>:sha256:<32 hex>"`` over the source name, the
   normalised title and summary and the published date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from digest.urls import canonical as canonical_url
from digest.urls import is_http
from digest.urls import is_http as is_url

# canonical_url and is_url are digest.urls' canonical and is_http, under the names this module always had.
__all__ = ["IdInput", "assign_ids", "canonical_url", "content_id", "is_url"]

_GENERIC_GUIDS = frozenset({"", "0", "1", "-1", "none", "null", "nil", "undefined", "n/a", "na", "guid", "id", "#"})


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())


def content_id(source: str, title: str, summary: str, published: dt.datetime | None) -> str:
    """The content-hash id: same source, text and date give the same id."""
    when = published.astimezone(dt.UTC).isoformat() if published is not None else ""
    material = "\x1f".join((source, _normal(title), _normal(summary), when))
    return f"{source}:sha256:{hashlib.sha256(material.encode('utf-8')).hexdigest()[:32]}"


@dataclass(frozen=True, slots=True)
class IdInput:
    """What an id is chosen from, for one entry of a fetch."""

    guid: str | None
    link: str | None
    title: str
    summary: str
    published: dt.datetime | None


def _guid_id(source: str, guid: str | None, generic: Collection[str]) -> str | None:
    if guid is None:
        return None
    g = guid.strip()
    if g.lower() in _GENERIC_GUIDS or len(g) > 2000:
        return None
    if is_http(g):
        if canonical_url(g) in generic:
            return None
        return canonical_url(g, keep_fragment=True)
    return f"{source}:guid:{g}"


def assign_ids(source: str, items: Sequence[IdInput], generic: Collection[str] = ()) -> list[str]:
    """One stable id per item, in order; ids are unique within the batch.

    ``generic`` holds canonical URLs that identify the feed or site rather
    than an entry (a guid or link equal to one of them is not trusted).
    """
    generic = {canonical_url(g) for g in generic if g and is_http(g)}
    guids = [_guid_id(source, it.guid, generic) for it in items]
    links = [canonical_url(it.link) if it.link and is_http(it.link) else None for it in items]
    guid_counts = Counter(g for g in guids if g)
    link_counts = Counter(link for link in links if link)
    out: list[str] = []
    taken: set[str] = set()
    for it, guid, link in zip(items, guids, links, strict=True):
        if guid and guid_counts[guid] == 1:
            chosen = guid
        elif link and link_counts[link] == 1 and link not in generic:
            chosen = link
        else:
            chosen = content_id(source, it.title, it.summary, it.published)
        # Two items with identical text and date: number the later ones, in page order.
        base, n = chosen, 1
        while chosen in taken:
            n += 1
            chosen = f"{base}~{n}"
        taken.add(chosen)
        out.append(chosen)
    return out
