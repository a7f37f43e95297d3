"""The napkin-math probes: every slice is timed, and the bandwidth and GEMM probes give a rate (their values
are measured in benchmarks, not asserted here)."""
from __future__ import annotations

import math

from edgeseq.profile.bandwidth import _best_time, copy_gb_s, read_gb_s
from edgeseq.profile.gemm_peak import gemm_gflops


def test_every_slice_runs_in_every_rep() -> None:
    calls: list[int] = []
    best = _best_time(calls.append, threads=3, reps=2)
    assert sorted(calls) == [0, 0, 1, 1, 2, 2] and best > 0


def test_copy_and_read_probes_give_finite_rates() -> None:
    for probe in (copy_gb_s, read_gb_s):
        rate = probe(size_mib=8, threads=2, reps=1)
        assert rate > 0 and math.isfinite(rate)


def test_gemm_probe_gives_a_finite_rate() -> None:
    rate = gemm_gflops(n=128, threads=1, reps=2)
    assert rate > 0 and math.isfinite(rate)
