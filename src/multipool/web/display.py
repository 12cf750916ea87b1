"""How numbers read on the page: pure functions, used as Jinja2 filters."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

HASHRATE_UNITS = ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s", "ZH/s")


def format_hashrate(rate: float | None) -> str:
    """Given a hashrate in hashes per second, return it in the largest unit (steps of
    1000) that keeps it at least 1, with two decimals.

    >>> format_hashrate(12345.6), format_hashrate(999.999), format_hashrate(0)
    ('12.35 kH/s', '1.00 kH/s', '0 H/s')
    >>> format_hashrate(None)
    '-'
    """
    if rate is None:
        return "-"
    if rate == 0:
        return "0 H/s"
    value = rate
    for unit in HASHRATE_UNITS:
        # Compare the rounded value, so that 999.999 reads 1.00 kH/s, not 1000.00 H/s.
        if round(value, 2) < 1000 or unit == HASHRATE_UNITS[-1]:
            return f"{value:.2f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_age(seconds: float | None) -> str:
    """Given an age in seconds, return how long ago that was, to the two largest units.

    >>> format_age(42), format_age(65), format_age(7200), format_age(7260)
    ('42 s ago', '1 min ago', '2 h ago', '2 h 1 min ago')
    >>> format_age(90000), format_age(None)
    ('1 d 1 h ago', '-')
    """
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        hours, minutes = divmod(s // 60, 60)
        return f"{hours} h {minutes} min ago" if minutes else f"{hours} h ago"
    days, hours = divmod(s // 3600, 24)
    return f"{days} d {hours} h ago" if hours else f"{days} d ago"


def format_number(value: float | None) -> str:
    """Given a difficulty or a percentage, return it without needless decimals.

    >>> format_number(16.0), format_number(0.05), format_number(65536), format_number(1.5)
    ('16', '0.05', '65,536', '1.5')
    """
    if value is None:
        return "-"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.8g}"


def format_coins(amount: Decimal | None) -> str:
    """Given an amount in coins, return it without trailing zeros.

    >>> format_coins(Decimal("0.10000000")), format_coins(Decimal("10.00")), format_coins(None)
    ('0.1', '10', '-')
    """
    if amount is None:
        return "-"
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def plural(count: int, word: str) -> str:
    """Given a count and a noun, return them as read: ``1 miner``, ``2 miners``.

    >>> plural(1, "miner"), plural(0, "peer"), plural(2, "worker")
    ('1 miner', '0 peers', '2 workers')
    """
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def window_text(seconds: float) -> str:
    """Given a time window in seconds, return it as a label: ``10 min``, ``1 h``, ``45 s``.

    >>> window_text(600), window_text(3600), window_text(45)
    ('10 min', '1 h', '45 s')
    """
    s = int(seconds)
    if s % 3600 == 0:
        return f"{s // 3600} h"
    if s % 60 == 0:
        return f"{s // 60} min"
    return f"{s} s"


def format_utc(time: datetime) -> str:
    """Given an aware time, return it in UTC to the minute.

    >>> from datetime import timedelta, timezone
    >>> format_utc(datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=2))))
    '2026-12-01 08:30 UTC'
    """
    return time.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def units_text(amount: int, decimals: int) -> str:
    """Given an amount in the coin's smallest unit and the coin's decimals, return the
    exact amount in coins as a decimal string with every decimal (the API's form).

    >>> units_text(123456789, 8), units_text(-5, 8), units_text(7, 0)
    ('1.23456789', '-0.00000005', '7')
    """
    if decimals == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, part = divmod(abs(amount), 10**decimals)
    return f"{sign}{whole}.{part:0{decimals}d}"


def format_units(amount: int | None, decimals: int) -> str:
    """Given an amount in the smallest unit, return it in coins without trailing zeros.

    >>> format_units(10000000, 8), format_units(123456789, 8), format_units(None, 8)
    ('0.1', '1.23456789', '-')
    """
    if amount is None:
        return "-"
    return format_coins(Decimal(units_text(amount, decimals)))


def format_percent(fraction: float | None, digits: int = 1) -> str:
    """Given a fraction (1.0 = 100 %), return it as a percentage.

    >>> format_percent(0.4567), format_percent(1.5), format_percent(None)
    ('45.7 %', '150.0 %', '-')
    """
    if fraction is None:
        return "-"
    return f"{fraction * 100:.{digits}f} %"


def shorten(text: str, keep: int = 8) -> str:
    """Given a long identifier (an address, a txid), return its start and end around an
    ellipsis, for tables; the full text goes in a title or a link.

    >>> shorten("rltc1qxyzabcdefghijklmnop0123"), shorten("short")
    ('rltc1qxy…nop0123', 'short')
    """
    if len(text) <= 2 * keep + 1:
        return text
    return f"{text[:keep]}…{text[-(keep - 1):]}"
