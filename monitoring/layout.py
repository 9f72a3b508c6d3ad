"""Where the metrics live in the store: names shared by the writer (``flush.py``) and the
readers (``queries.py``, ``/metrics``).

Per dimension, tallies are kept in integer hashes whose fields are ``<key>|<stat>``:

    total:<dimension>                 since the counts began (the /metrics counters)
    window:<start>:<dimension>        what the processes flushed during the interval that starts
                                      at <start> (epoch seconds): the time series, kept a little
                                      over an hour. Flushers wake just after each boundary, so
                                      this is what was served in the interval before <start>.

``<stat>`` is ``count``, ``errors``, ``sum_us`` (latency sum in microseconds) or ``b<i>`` (the
histogram bucket i, see ``histogram.py``; zero buckets are not written). A key may contain
anything, ``|`` included: the stat is what follows the last ``|``. One hash per dimension and
interval means a whole dimension is read in one command, and a key's history in one pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitoring.histogram import BUCKET_COUNT, Tally

# "gateway" has one key, ALL_KEY: every exchange, also those no route matched.
DIMENSIONS = ("gateway", "route", "target", "api_key", "tool")
ALL_KEY = "all"

FIELD_SEPARATOR = "|"
COUNT, ERRORS, LATENCY_SUM_US = "count", "errors", "sum_us"
BUCKET_FIELDS = tuple(f"b{index}" for index in range(BUCKET_COUNT))

# The dashboard's series covers an hour; windows live a little longer so the oldest point is
# still whole when it is read.
SERIES_SECONDS = 3600
WINDOW_GRACE_SECONDS = 120
# Cumulative totals outlive any scrape gap. Every flush renews its dimension's hash, so a key
# that stops (a deleted route) keeps its last values; only a dimension without any traffic for
# this long starts again from zero, which Prometheus reads as a counter reset.
TOTALS_TTL_SECONDS = 7 * 24 * 3600
# A window holds every process's flush of it by this share of an interval after its start:
# flushers wake just after each boundary (``flush.WAKE_AFTER_BOUNDARY``, well below this).
SETTLED_AFTER_SHARE = 0.2


def totals_name(dimension: str) -> str:
    return f"total:{dimension}"


def window_name(dimension: str, start: int) -> str:
    return f"window:{start}:{dimension}"


def window_start(now: float, interval: int) -> int:
    """The start of the flush interval that ``now`` (epoch seconds) falls in."""
    return int(now // interval) * interval


def latest_settled_window(now: float, interval: int) -> int:
    """The newest window every process has flushed into by ``now``."""
    return window_start(now - SETTLED_AFTER_SHARE * interval, interval)


def window_ttl(interval: int) -> float:
    return SERIES_SECONDS + WINDOW_GRACE_SECONDS + 2 * interval


def fields_of(key: str, tally: Tally) -> dict[str, int]:
    """The hash fields that add ``tally`` to ``key`` (zeros left out)."""
    stats = {COUNT: tally.count, ERRORS: tally.errors, LATENCY_SUM_US: tally.latency_sum_us}
    stats.update(zip(BUCKET_FIELDS, tally.buckets))
    return {f"{key}{FIELD_SEPARATOR}{stat}": value for stat, value in stats.items() if value}


def key_field_names(key: str) -> list[str]:
    """Every field one key may have (to read one key out of a dimension's hash)."""
    return [f"{key}{FIELD_SEPARATOR}{stat}" for stat in (COUNT, ERRORS, LATENCY_SUM_US, *BUCKET_FIELDS)]


def tallies_from_fields(fields: Mapping[str, int]) -> dict[str, Tally]:
    """Turn a hash back into one tally per key (unknown stats are ignored)."""
    tallies: dict[str, Tally] = {}
    for name, value in fields.items():
        key, _, stat = name.rpartition(FIELD_SEPARATOR)
        if not key:
            continue
        tally = tallies.setdefault(key, Tally())
        _add_stat(tally, stat, value)
    return tallies


def _add_stat(tally: Tally, stat: str, value: int) -> None:
    if stat == COUNT:
        tally.count += value
    elif stat == ERRORS:
        tally.errors += value
    elif stat == LATENCY_SUM_US:
        tally.latency_sum_us += value
    elif stat.startswith("b") and stat[1:].isdigit() and int(stat[1:]) < BUCKET_COUNT:
        tally.buckets[int(stat[1:])] += value
