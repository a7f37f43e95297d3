"""Statistics over raw samples: keep the samples, derive median, p90, p99, mean and std."""
from __future__ import annotations

import math
import statistics


def summarize(samples: list[float]) -> dict[str, float]:
    xs = sorted(x for x in samples if not math.isnan(x))
    if not xs:
        return {"n": 0, "median": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan, "std": math.nan}
    return {"n": len(xs), "median": statistics.median(xs), "p90": percentile(xs, 90), "p99": percentile(xs, 99),
            "mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}


def percentile(sorted_xs: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on already sorted data."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = (len(sorted_xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)
