"""OpenStreetMap ``opening_hours``, the common subset: parsed, told in French, open now or not.

Understood: rules separated by ``;``; days ``Mo``…``Su`` as lists and ranges (``Mo-Fr,Su``);
times ``HH:MM-HH:MM``, several per rule (``09:00-12:00,14:00-18:00``), past midnight
(``22:00-02:00``); ``off`` / ``closed``; ``24/7``; ``PH off`` (French public holidays); a rule
without days applies to every day. A later rule replaces an earlier one for the days it names,
as in OSM. Anything else is refused with a reason (the validator then refuses the value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
DAY_NAMES = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
PARIS = ZoneInfo("Europe/Paris")
MAX_LENGTH = 500
_TIME = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])")
_DAYSEL = re.compile(r"(Mo|Tu|We|Th|Fr|Sa|Su|PH)(?:-(Mo|Tu|We|Th|Fr|Sa|Su))?")


class OpeningHoursError(ValueError):
    """A value outside the understood subset."""


@dataclass
class Schedule:
    """Minutes open per weekday (0 = Monday) and the public-holiday rule."""

    week: list[list[tuple[int, int]] | None] = field(default_factory=lambda: [None] * 7)
    holidays_off: bool = False
    always: bool = False

    def intervals(self, day: int) -> list[tuple[int, int]]:
        """Open intervals (minutes from midnight) of a weekday; empty when closed."""
        return self.week[day] or []


def _minutes(h: str, m: str) -> int:
    return int(h) * 60 + int(m)


def parse(text: str) -> Schedule:
    """The schedule of an `opening_hours` value, or OpeningHoursError with the reason."""
    if len(text) > MAX_LENGTH:
        raise OpeningHoursError(f"horaires trop longs (plus de {MAX_LENGTH} caractères)")
    sched = Schedule()
    rules = [r.strip() for r in text.strip().split(";") if r.strip()]
    if not rules:
        raise OpeningHoursError("horaires vides")
    for rule in rules:
        if rule == "24/7":
            sched.always = True
            sched.week = [[(0, 1440)] for _ in DAYS]
            continue
        head, _, rest = rule.partition(" ")
        days: list[int] = []
        holiday = False
        if _DAYSEL.match(head) and head[:2] in (*DAYS, "PH"):
            for part in head.split(","):
                m = _DAYSEL.fullmatch(part)
                if m is None:
                    raise OpeningHoursError(f"jours illisibles : « {part} »")
                if m.group(1) == "PH":
                    if m.group(2):
                        raise OpeningHoursError("« PH » ne forme pas d'intervalle")
                    holiday = True
                    continue
                a = DAYS.index(m.group(1))
                b = DAYS.index(m.group(2)) if m.group(2) else a
                span = range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)]
                days.extend(span)
            spec = rest.strip()
        else:
            days, spec = list(range(7)), rule
        if spec in ("off", "closed"):
            times: list[tuple[int, int]] = []
        else:
            times = []
            for part in spec.split(","):
                m = _TIME.fullmatch(part.strip())
                if m is None:
                    raise OpeningHoursError(
                        f"horaire illisible : « {part.strip()} » (attendu HH:MM-HH:MM)"
                    )
                start, end = _minutes(m.group(1), m.group(2)), _minutes(m.group(3), m.group(4))
                if start > 1440 or end > 1440 or start == end:
                    raise OpeningHoursError(f"horaire impossible : « {part.strip()} »")
                times.append((start, end))
        if holiday:
            if times:
                raise OpeningHoursError("seul « PH off » est compris pour les jours fériés")
            sched.holidays_off = True
        for d in days:
            sched.week[d] = list(times)
    return sched


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60}h{minutes % 60:02d}".replace("h00", "h")


def describe(sched: Schedule) -> list[str]:
    """French lines, days with the same hours grouped (« lundi – vendredi : 9h – 12h »)."""
    if sched.always:
        return ["ouvert 24 h/24, 7 j/7"]
    lines: list[str] = []
    d = 0
    while d < 7:
        e = d
        while e + 1 < 7 and sched.intervals(e + 1) == sched.intervals(d):
            e += 1
        times = sched.intervals(d)
        label = DAY_NAMES[d] if d == e else f"{DAY_NAMES[d]} – {DAY_NAMES[e]}"
        hours = (
            ", ".join(f"{_hhmm(a)} – {_hhmm(b % 1440 if b != 1440 else 1440)}" for a, b in times)
            if times
            else "fermé"
        )
        lines.append(f"{label} : {hours}")
        d = e + 1
    if sched.holidays_off:
        lines.append("jours fériés : fermé")
    return lines


def easter(year: int) -> date:
    """Easter Sunday (Gregorian, anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    L = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * L) // 451
    month = (h + L - 7 * m + 114) // 31
    day = (h + L - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def french_holidays(year: int) -> set[date]:
    """The eleven national public holidays of France for a year."""
    e = easter(year)
    fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)]
    return {date(year, m, d) for m, d in fixed} | {
        e + timedelta(days=1),
        e + timedelta(days=39),
        e + timedelta(days=50),
    }


def is_open(sched: Schedule, when: datetime) -> bool:
    """True when open at `when` (converted to Europe/Paris time)."""
    local = when.astimezone(PARIS)
    minute = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    if sched.holidays_off and local.date() in french_holidays(local.year):
        return False
    for a, b in sched.intervals(today):
        if (a < b and a <= minute < b) or (a > b and minute >= a):
            return True
    prev = local.date() - timedelta(days=1)
    if sched.holidays_off and prev in french_holidays(prev.year):
        return False
    return any(a > b and minute < b for a, b in sched.intervals(yesterday))


def summary(text: str | None, now: datetime | None = None) -> dict[str, object] | None:
    """The card's view of a value: raw, French lines, and open now (None when not computable)."""
    if not text:
        return None
    try:
        sched = parse(text)
    except OpeningHoursError:
        return {"raw": text, "lines": [text], "open_now": None}
    return {
        "raw": text,
        "lines": describe(sched),
        "open_now": is_open(sched, now or datetime.now(PARIS)),
    }
