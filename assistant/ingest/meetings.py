"""Which meeting a text is, and which meeting or period a question names.

A document's meeting (title, date, kind, body) comes from, in this order: YAML
front matter or a sidecar ``NAME.meta.yaml``; the ISO date in the file name;
the text itself (the first heading or line, a date such as "fredag 26. april"
completed with the year from the file name or the text). Each field records
where it came from.

A question names a meeting with a date or period ("26. april", "i april 2024",
"høsten 2023", "i fjor", "vårmøtet 2025", "in the April 2024 consultation"), a
kind ("kommunestyret", "konsultasjonsmøtet", "county council") or a place that
some meeting belongs to ("i Bergvik kommunestyre"), in bokmål, nynorsk or
English. Retrieval prefers the documents that match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

MONTHS = {
    **{m: i for i, m in enumerate("januar februar mars april mai juni juli august september oktober november desember".split(), 1)},
    **{m: i for i, m in enumerate("january february march april may june july august september october november december".split(), 1)},
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "okt": 10, "oct": 10,
    "nov": 11, "des": 12, "dec": 12,
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
# Kinds of meeting and the words that name them; the first word is how a kind is written.
KINDS: dict[str, tuple[str, ...]] = {
    "konsultasjonsmøte": ("konsultasjonsmøte", "konsultasjon", "consultation", "vårmøte", "høstmøte", "hausmøte"),
    "fylkesting": ("fylkesting", "county council"),
    "fylkesmøte": ("fylkesmøte", "regional meeting", "county meeting"),
    "kommunestyre": ("kommunestyre", "bystyre", "municipal council", "town council", "city council", "council meeting"),
    "formannskap": ("formannskap", "executive committee"),
    "styremøte": ("styremøte", "hovedstyre", "styret i ks", "ks-styret", "board meeting", "board of ks", "ks board", "the board"),
}
_SEASONS = {"vår": (2, 6), "spring": (2, 6), "høst": (8, 12), "haust": (8, 12), "autumn": (8, 12), "fall": (8, 12)}
_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)")
_DOTTED = re.compile(r"(?<![\d.])(\d{1,2})\.(\d{1,2})\.(\d{4}|\d{2})(?![\d.])")
_DAY_MONTH = re.compile(rf"(?<!\d)(\d{{1,2}})\.?\s+(?:og\s+\d{{1,2}}\.\s+)?({_MONTH})\b\.?(?:\s+(\d{{4}}))?", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b({_MONTH})\s+(\d{{1,2}})(?!\d)(?:st|nd|rd|th)?,?(?:\s+(\d{{4}}))?", re.IGNORECASE)
_MONTH_YEAR = re.compile(rf"\b(?:(i|in|during|frå|fra|from)\s+)?({_MONTH})\b(?:\s+(?:of\s+)?(\d{{4}}))?", re.IGNORECASE)
_SEASON_YEAR = re.compile(
    r"\b(vår|høst|haust|spring|autumn|fall)(?:en|ens|møtet|møte|s)?\b(?:\s+(?:of\s+)?(\d{4}))?", re.IGNORECASE
)
_AMBIGUOUS = frozenset({"mar", "may", "mai", "jun", "jul", "des"})  # also ordinary words: need "i"/"in" or a year
_YEAR = re.compile(r"\b(?:i|in|during|på|at the)\s+(\d{4})\b", re.IGNORECASE)
_RANGE_YEAR = re.compile(r"\b(?:fra|frå|from|mellom|between|til|to|and|og)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)
_RELATIVE = {
    r"\bi\s+forfjor\b": -2, r"\bi\s+fjor\b": -1, r"\blast\s+year\b": -1,
    r"\bi\s+år\b": 0, r"\bthis\s+year\b": 0,
}
_FILE_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_HEADING = re.compile(r"\s{0,3}#{1,6}\s+(\S.*?)\s*#*\s*$")
_TITLE_CHARS = 120


@dataclass(frozen=True)
class Meeting:
    """What a document is: its meeting's title, ISO date, kind and body, and where each came from."""

    title: str = ""
    date: str = ""
    kind: str = ""
    body: str = ""
    origins: dict[str, str] = field(default_factory=dict)

    def label(self) -> str:
        """How citations name the meeting: "KS konsultasjonsmøte 26.04.2024"."""
        day = self.day
        if day is None:
            return self.title
        if str(day.year) in self.title:
            return self.title
        return f"{self.title} {day:%d.%m.%Y}".strip()

    @property
    def day(self) -> date | None:
        try:
            return date.fromisoformat(self.date) if self.date else None
        except ValueError:
            return None

    def to_json(self) -> dict[str, object]:
        return {"title": self.title, "date": self.date, "kind": self.kind, "body": self.body, "origins": dict(self.origins)}

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Meeting:
        data = data or {}
        origins = data.get("origins")
        return cls(
            str(data.get("title") or ""),
            str(data.get("date") or ""),
            str(data.get("kind") or ""),
            str(data.get("body") or ""),
            {str(k): str(v) for k, v in origins.items()} if isinstance(origins, dict) else {},
        )


def describe(text: str, name: str, given: Mapping[str, object] | None = None, given_origin: str = "front matter") -> Meeting:
    """A document's meeting: fields given in front matter or a sidecar win, then the file name, then the text."""
    given = given or {}
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for key in ("title", "date", "kind", "body"):
        value = given.get(key)
        if key == "date" and value not in (None, ""):
            value = value if isinstance(value, date) else _given_date(str(value))
        if value not in (None, ""):
            values[key] = value.isoformat() if isinstance(value, date) else str(value).strip()
            origins[key] = given_origin
    head = _head(text)
    stem = re.sub(r"\.[^.]+$", "", name.rsplit("/", 1)[-1])
    file_day = _FILE_DATE.search(stem)
    if "date" not in values:
        if file_day:
            values["date"], origins["date"] = file_day.group(0), "file name"
        else:
            found = first_date(head, _year_hint(stem, text))
            if found:
                values["date"], origins["date"] = found.isoformat(), "text"
    if "kind" not in values:
        kind = kind_in(" ".join([head[:600], stem.replace("-", " ")]))
        if kind:
            values["kind"], origins["kind"] = kind, "text"
    if "title" not in values:
        title = _title(text)
        if title:
            values["title"], origins["title"] = title, "text"
        else:
            values["title"], origins["title"] = _title_from_name(stem), "file name"
    if "body" not in values:
        body = _body(values.get("title", ""), " ".join([head[:600], stem.replace("-", " ")]), values.get("kind", ""))
        if body:
            values["body"], origins["body"] = body, "text"
    return Meeting(values.get("title", ""), values.get("date", ""), values.get("kind", ""), values.get("body", ""), origins)


def _given_date(value: str) -> date | None:
    """An ISO date, or a written one ("6. februar 2025")."""
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        return first_date(value)


def _head(text: str) -> str:
    return "\n".join(line for line in text[:4000].split("\n")[:40] if line.strip())


def _title(text: str) -> str:
    """The first Markdown heading near the top, else a short first line that reads like a title."""
    lines = [line.strip() for line in text.split("\n")[:40] if line.strip()]
    for line in lines[:10]:
        heading = _HEADING.match(line)
        if heading:
            return heading.group(1).strip("*_ ")[:_TITLE_CHARS]
    titles = [line for line in lines[:2] if len(line) <= _TITLE_CHARS and not line.endswith((".", ",", ";")) and "/" not in line]
    if not titles or titles[0] != (lines[0] if lines else ""):
        return ""
    if len(titles) == 2 and not kind_in(titles[0]) and kind_in(titles[1]):
        return f"{titles[0]} – {titles[1]}"  # "Fjordvik kommune" over "Protokoll fra møte i formannskapet …"
    return titles[0]


def _title_from_name(stem: str) -> str:
    """"ks-konsultasjonsmote-2024-04-26" -> "KS konsultasjonsmøte"."""
    words = [w for w in re.split(r"[-_ ]+", _FILE_DATE.sub("", stem)) if w]
    ascii_kinds = {k.replace("ø", "o").replace("æ", "ae").replace("å", "a"): k for k in KINDS}
    shown = [("KS" if w.lower() == "ks" else ascii_kinds.get(w.lower(), w)) for w in words]
    title = " ".join(shown)
    return title[:1].upper() + title[1:]


def _year_hint(stem: str, text: str) -> int | None:
    found = re.search(r"(?<!\d)(19|20)\d{2}(?!\d)", stem) or re.search(r"(?<![\d.,])(19|20)\d{2}(?![\d.,])", text[:4000])
    return int(found.group(0)) if found else None


def first_date(text: str, year_hint: int | None = None) -> date | None:
    """The first full date in the text; a day and month without a year take ``year_hint``."""
    candidates: list[tuple[int, date]] = []
    for match in _ISO.finditer(text):
        candidates.extend(_safe(match.start(), int(match.group(1)), int(match.group(2)), int(match.group(3))))
    for match in _DOTTED.finditer(text):
        year = int(match.group(3))
        candidates.extend(_safe(match.start(), year + 2000 if year < 100 else year, int(match.group(2)), int(match.group(1))))
    for match in _DAY_MONTH.finditer(text):
        year = int(match.group(3)) if match.group(3) else year_hint
        if year:
            candidates.extend(_safe(match.start(), year, MONTHS[match.group(2).lower()], int(match.group(1))))
    return min(candidates)[1] if candidates else None


def _safe(position: int, year: int, month: int, day: int) -> list[tuple[int, date]]:
    try:
        return [(position, date(year, month, day))]
    except ValueError:
        return []


def kind_in(text: str) -> str:
    """The kind of meeting the text names first, or ""."""
    lowered = text.casefold()
    found = [(lowered.find(word), kind) for kind, words in KINDS.items() for word in words if word in lowered]
    return min(found)[1] if found else ""


def _body(title: str, head: str, kind: str) -> str:
    """Who met: "Bergvik kommunestyre", "Vestfjord fylkesting", "KS Vestfjord" (from a title), "KS"."""
    text = f"{title} {head}"
    named = re.search(r"\b([A-ZÆØÅ][\wæøå]+)\s+(kommunestyre|bystyre|formannskap|fylkesting)", text)
    if named:
        return f"{named.group(1)} {named.group(2)}"
    named = re.search(r"\b(kommunestyret|bystyret|formannskapet|fylkestinget|fylkesmøtet)\s+i\s+([A-ZÆØÅ][\wæøå]+)", text, re.IGNORECASE)
    if named:
        return f"{named.group(2)} {_DEFINITE[named.group(1).lower()]}"
    named = re.search(r"\bKS\s+([A-ZÆØÅ][a-zæøå]+)\b", title)
    if named and named.group(1).casefold() not in _COMMON:
        return f"KS {named.group(1)}"
    if re.search(r"\bKS\b", text) and kind in ("konsultasjonsmøte", "styremøte", "fylkesmøte", ""):
        return "KS"
    return ""


_DEFINITE = {
    "kommunestyret": "kommunestyre", "bystyret": "bystyre", "formannskapet": "formannskap",
    "fylkestinget": "fylkesting", "fylkesmøtet": "fylkesmøte",
}
_COMMON = frozenset("krever møtte mener ber vil og i på til for om styret".split())


# ---- what a question names ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The meeting a question names: periods (inclusive date ranges), kinds and places, each possibly empty."""

    periods: tuple[tuple[date, date], ...] = ()
    month_days: tuple[tuple[int, int | None], ...] = ()  # a month (and day) without a year: "26. april", "i juni"
    kinds: frozenset[str] = frozenset()
    places: frozenset[str] = frozenset()
    rest: str = ""  # the question without the words that name the meeting: what to look for inside it
    sources: frozenset[str] = frozenset()  # documents meant without being named: a follow-up's conversation

    def __bool__(self) -> bool:
        return bool(self.periods or self.month_days or self.kinds or self.places or self.sources)

    def match(self, meeting: Meeting, source: str = "") -> float:
        """Share of what the question names that the meeting (of ``source``) matches (0..1)."""
        if self.sources:
            return float(source in self.sources)
        checks: list[bool] = []
        day = meeting.day
        if self.periods or self.month_days:
            in_period = day is not None and (
                any(a <= day <= b for a, b in self.periods)
                or any(day.month == m and d in (None, day.day) for m, d in self.month_days)
            )
            checks.append(in_period)
        if self.kinds:
            checks.append(meeting.kind in self.kinds)
        if self.places:
            words = set(re.findall(r"[\wæøå]+", f"{meeting.body} {meeting.title}".casefold()))
            checks.append(bool(self.places & words))
        return sum(checks) / len(checks) if checks else 0.0


def reference(question: str, today: date, places: Iterable[str] = ()) -> Reference:
    """What meeting or period the question names; ``places`` are the bodies' names the corpus knows."""
    text = question.casefold()
    periods: list[tuple[date, date]] = []
    month_days: list[tuple[int, int | None]] = []
    taken: list[tuple[int, int]] = []

    def free(match: re.Match[str]) -> bool:
        return not any(a < match.end() and match.start() < b for a, b in taken)

    for match in _ISO.finditer(text):
        periods.extend((d, d) for _, d in _safe(0, int(match.group(1)), int(match.group(2)), int(match.group(3))))
        taken.append(match.span())
    for match in _DOTTED.finditer(text):
        year = int(match.group(3))
        periods.extend((d, d) for _, d in _safe(0, year + 2000 if year < 100 else year, int(match.group(2)), int(match.group(1))))
        taken.append(match.span())
    for pattern, day_group, month_group in ((_DAY_MONTH, 1, 2), (_MONTH_DAY, 2, 1)):
        for match in pattern.finditer(text):
            if not free(match):
                continue
            month, day = MONTHS[match.group(month_group).lower()], int(match.group(day_group))
            if match.group(3):
                periods.extend((d, d) for _, d in _safe(0, int(match.group(3)), month, day))
            elif 1 <= day <= 31:
                month_days.append((month, day))
            taken.append(match.span())
    for match in _MONTH_YEAR.finditer(text):
        if not free(match) or (match.group(2).lower() in _AMBIGUOUS and not (match.group(1) or match.group(3))):
            continue
        month = MONTHS[match.group(2).lower()]
        if match.group(3):
            year = int(match.group(3))
            periods.append((date(year, month, 1), _month_end(year, month)))
        else:
            month_days.append((month, None))
        taken.append(match.span())
    for match in _SEASON_YEAR.finditer(text):
        if not free(match) or (match.group(1).lower() == "fall" and not match.group(2)):
            continue  # "costs fall" is no season
        first, last = _SEASONS[match.group(1).lower()]
        years = [int(match.group(2))] if match.group(2) else [today.year, today.year - 1]
        periods.extend((date(y, first, 1), _month_end(y, last)) for y in years)
        taken.append(match.span())
    for pattern, offset in _RELATIVE.items():
        for match in re.finditer(pattern, text):
            year = today.year + offset
            periods.append((date(year, 1, 1), date(year, 12, 31)))
            taken.append(match.span())
    for match in _YEAR.finditer(text):
        if free(match) and not _RANGE_YEAR.search(text[: match.start()][-30:]):
            year = int(match.group(1))
            periods.append((date(year, 1, 1), date(year, 12, 31)))
            taken.append(match.span())
    kinds = set()
    for kind, words in KINDS.items():
        for word in words:
            for match in re.finditer(rf"(?<![\wæøå]){re.escape(word)}[\wæøå]*", text):
                kinds.add(kind)
                taken.append(match.span())
    if taken:  # "the meeting", "rapporten fra" say only that a meeting is meant
        taken.extend(m.span() for m in _GENERIC.finditer(text))
    known = {p.casefold() for p in places}
    words = set(re.findall(r"[\wæøå]+", text))
    named_places = frozenset(w for w in known if w in words or f"{w}s" in words)
    rest = _without(question, taken) if len(text) == len(question) else question
    return Reference(tuple(dict.fromkeys(periods)), tuple(dict.fromkeys(month_days)), frozenset(kinds), named_places, rest)


_LINKS = re.compile(
    r"(?:\b(?:i|på|under|fra|frå|til|ifølge|ifølgje|in|at|on|during|from|of|the|this|that|its|according\s+to)\s+)+$",
    re.IGNORECASE,
)
_GENERIC = re.compile(r"(?<![\wæøå])(?:møtet|møte|meeting|rapporten|referatet|protokollen|report|minutes)(?![\wæøå])")


def _without(question: str, spans: Iterable[tuple[int, int]]) -> str:
    """The question with the spans cut out, each with the little words that led to it ("i", "in the")."""
    kept, position = [], 0
    for start, end in sorted(spans):
        if start < position:
            position = max(position, end)
            continue
        kept.append(_LINKS.sub("", question[position:start]))
        position = end
    kept.append(question[position:])
    return " ".join(" ".join(kept).split())


def _month_end(year: int, month: int) -> date:
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


def place_names(meetings: Iterable[Meeting]) -> frozenset[str]:
    """The places of the meetings' bodies ("Bergvik", "Vestfjord"): what a question may name to pick a meeting.

    KS is left out: nearly every text and question mentions it, so it picks nothing.
    """
    names: set[str] = set()
    for meeting in meetings:
        names.update(re.findall(r"\b[A-ZÆØÅ][a-zæøå]+\b", meeting.body))
    return frozenset(names)
