"""Parameters of the land-access diagnostic, shared by the engine, the matching and the rules.

A module of its own so that `engine` (which calls `matching` and `rules`) and those two
(which read the parameters) all import it, rather than each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """Parameters of the diagnostic, stated in the report."""

    min_sales: int = 5
    # A price change is a headline: each end year needs this many market sales of premises,
    # and a year with fewer than `complete_year_share` of the median yearly count of sales is
    # incomplete (a partial file, a lockdown) and never an end of the comparison.
    min_trend_sales: int = 20
    complete_year_share: float = 0.6
    qpv_buffer_m: float = 300.0
    similar_k: int = 3
    matches_per_need: int = 3
    default_distance_km: float = 15.0
    station_far_m: float = 1000.0
    pressure_high: float = 1.15
    pressure_low: float = 0.85
