"""The one timestamp format: UTC, microseconds, a trailing Z (`2026-11-26T05:09:24.123456Z`)."""

from __future__ import annotations

from datetime import UTC, datetime

ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now_iso() -> str:
    return datetime.now(UTC).strftime(ISO_FORMAT)


def iso(moment: datetime) -> str:
    """A datetime in the format; a naive one is taken to be UTC already (what YAML gives for a `Z` stamp)."""
    return (moment.astimezone(UTC) if moment.tzinfo is not None else moment).strftime(ISO_FORMAT)


def iso_of_epoch(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime(ISO_FORMAT)


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text, ISO_FORMAT).replace(tzinfo=UTC)


def age_s(stamp: str) -> float:
    """Seconds from a stamp in the format to now."""
    return (datetime.now(UTC) - parse_iso(stamp)).total_seconds()
