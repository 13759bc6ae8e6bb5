"""Which documents a search may use: the ``where`` filter of searches, answers and ``ask``.

Each backend applies it its own way (the local one by passage ids, Qdrant by
payload conditions); this module only says what it means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from ..ingest.meetings import Meeting

WHERE_KEYS = ("source", "kind", "after", "before")


class FilterError(ValueError):
    """A ``where`` filter that cannot be applied; the message says which key and why."""


@dataclass(frozen=True)
class Where:
    """Which documents a search may use: one source file, one kind of meeting, a date range (inclusive)."""

    source: str | None = None
    kind: str | None = None
    after: date | None = None
    before: date | None = None

    @classmethod
    def of(cls, where: "Where | Mapping[str, object] | None") -> "Where":
        if where is None or isinstance(where, Where):
            return where or cls()
        unknown = set(where) - set(WHERE_KEYS)
        if unknown:
            raise FilterError(f"unknown filter {sorted(unknown)}; use {', '.join(WHERE_KEYS)}")
        values: dict[str, object] = {}
        for key in ("after", "before"):
            value = where.get(key)
            if value in (None, ""):
                continue
            try:
                values[key] = value if isinstance(value, date) else date.fromisoformat(str(value))
            except ValueError:
                raise FilterError(f"{key} must be a date such as 2024-04-26, not {value!r}") from None
        for key in ("source", "kind"):
            if where.get(key) not in (None, ""):
                values[key] = str(where[key])
        return cls(**values)  # type: ignore[arg-type]

    def check(self, meetings: Mapping[str, Meeting]) -> None:
        """Refuse a source or kind that no document of the index has: it would silently find nothing."""
        if self.source is not None and self.source not in meetings:
            raise FilterError(f"source: no document is called {self.source!r} (the documents are listed by `documents`)")
        kinds = {m.kind.casefold() for m in meetings.values() if m.kind}
        if self.kind is not None and self.kind.casefold() not in kinds:
            known = ", ".join(sorted(kinds)) or "none"
            raise FilterError(f"kind: no document is of the kind {self.kind!r} (known kinds: {known})")

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.source, self.kind, self.after, self.before))

    def admits(self, source: str, meeting: Meeting) -> bool:
        if self.source is not None and source != self.source:
            return False
        if self.kind is not None and meeting.kind.casefold() != self.kind.casefold():
            return False
        if self.after is not None or self.before is not None:
            day = meeting.day
            if day is None or (self.after and day < self.after) or (self.before and day > self.before):
                return False
        return True
