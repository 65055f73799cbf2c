"""The small variant of benchmarks/load_fault.py: 3 concurrent sessions (2 well-behaved, 1 hostile)
on one app and one loopback Hub, then the three attacks of one client acting like many; every check
of the benchmark must pass."""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_concurrent_sessions_with_hostile_requests_each_get_their_own_result(hf_home):
    from benchmarks.load_fault import PEAK_RSS_BOUND_MB, run

    report = run(sessions=3, write=False)
    assert report["passed"], report["failures"]
    assert report["requests_served"].get("fit", 0) == 2 and report["requests_served"].get("pull_checkpoint") == 2
    assert report["errors_by_kind"].get("one job per client", 0) >= 1 + 17  # the hostile second fit, the flood
    attacks = report["attacks"]
    assert attacks["many_sessions"]["attacker_jobs_in_line"] <= 1
    assert all(ahead <= 1 for ahead in attacks["many_sessions"]["attacker_jobs_ahead_of_each_honest_client"])
    assert attacks["slow_urls"]["load_example_seconds_max"] < 1.0
    assert report["peak_rss_mb"] < PEAK_RSS_BOUND_MB
