"""A short soak in CI (issue 12): one real `askdocs serve`, several clients alternating upload, search,
ask and delete for 60 s; no errors, memory flat after warm-up, every acknowledged document found at the end.

The long run is ``python benchmarks/soak.py --duration N`` (README).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from soak import soak


def test_soak_60s() -> None:
    report = soak(duration=60, clients=3)
    assert report["errors"] == 0, report["first_errors"]
    assert report["missing_at_end"] == [], report
    assert report["operations"] >= 12, report  # every client got round its loop more than once
    assert report["rss_growth"] < 0.25, report
    assert report["ok"], report
