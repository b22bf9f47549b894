"""Which relays a status page shows: a filter from the query string (``q``, ``state``), failing
relays first, one page of them (``page``), and the links that keep the filter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import parse_qs, urlencode

from exporter.relay import RelayView

__all__ = ["PAGE_SIZE", "STATES", "PageQuery", "RelayPage", "is_failing", "select_relays"]

PAGE_SIZE = 100
STATES = ("all", "failing", "ok")
_PAGE = re.compile("[0-9]{1,9}")
_MAX_Q = 200  # a longer filter matches nothing a relay name or host could hold anyway


def is_failing(view: RelayView) -> bool:
    return view.last is not None and not view.last.success


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What the reader asked for: a substring of name or host, a state, a page (from 1)."""

    q: str = ""
    state: str = "all"
    page: int = 1

    @classmethod
    def parse(cls, query: str) -> PageQuery:
        """From ``q=...&state=...&page=...``; anything unknown or malformed is the default."""
        values = parse_qs(query, keep_blank_values=True)

        def first(key: str) -> str:
            return values.get(key, [""])[0]

        state = first("state")
        page = first("page")
        return cls(
            q=first("q").strip()[:_MAX_Q],
            state=state if state in STATES else "all",
            page=max(1, int(page)) if _PAGE.fullmatch(page) else 1,
        )

    @property
    def filtered(self) -> bool:
        return bool(self.q) or self.state != "all"

    def link(self, page: int) -> str:
        """The query string of ``page`` under this filter; only what differs from a default."""
        fields = {"q": self.q, "state": self.state if self.state != "all" else "",
                  "page": str(page) if page != 1 else ""}
        text = urlencode({k: v for k, v in fields.items() if v})
        return "?" + text if text else "/"

    def matches(self, name: str, view: RelayView) -> bool:
        if self.state == "failing" and not is_failing(view):
            return False
        if self.state == "ok" and not (view.last is not None and view.last.success):
            return False
        if not self.q:
            return True
        needle = self.q.casefold()
        return needle in name.casefold() or needle in view.info.host.casefold()


@dataclass(frozen=True, slots=True)
class RelayPage:
    """One page of the relays that match, and the counts the page states."""

    query: PageQuery
    rows: tuple[tuple[str, RelayView], ...]
    total: int  # relays configured
    failing: int  # of them, failing now
    matched: int  # relays the filter lets through
    pages: int
    first: int  # 1-based position of the first row shown among those matched, 0 for none

    @property
    def last(self) -> int:
        return self.first + len(self.rows) - 1 if self.rows else 0


def select_relays(relays: Mapping[str, RelayView], query: PageQuery, *,
                  size: int = PAGE_SIZE) -> RelayPage:
    """The relays ``query`` lets through, failing ones first and then by name, cut to its
    page; a page past the end shows the last one."""
    failing = 0
    kept: list[tuple[bool, str, RelayView]] = []
    for name, view in relays.items():
        down = is_failing(view)
        failing += down
        if query.matches(name, view):
            kept.append((not down, name, view))
    kept.sort(key=lambda row: (row[0], row[1]))
    pages = max(1, -(-len(kept) // size))
    page = min(query.page, pages)
    start = (page - 1) * size
    rows = tuple((name, view) for _, name, view in kept[start:start + size])
    return RelayPage(query=replace(query, page=page), rows=rows, total=len(relays),
                     failing=failing, matched=len(kept), pages=pages,
                     first=start + 1 if rows else 0)
