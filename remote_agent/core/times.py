"""Times as records keep them (ISO 8601, UTC, whole seconds), and ages read back from them."""

from __future__ import annotations

from datetime import datetime, timezone


def now_iso() -> str:
    return iso(datetime.now(timezone.utc))


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def parse_iso(text: str | None) -> datetime | None:
    """A recorded time; None when it is missing or not a time (a damaged record is not an error)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def age_seconds(text: str | None) -> float | None:
    """Seconds since a recorded time; None when there is none."""
    moment = parse_iso(text)
    return None if moment is None else (datetime.now(timezone.utc) - moment).total_seconds()


def since_text(moment: datetime) -> str:
    """'since 2025-11-22 13:40 UTC', as status shows when something started."""
    return "since " + moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
