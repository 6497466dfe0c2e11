"""One line per event for `vtstream tail`: a verdict change stands out, a strange record never raises."""

from __future__ import annotations

import pytest

from pipeline.cli.render import format_event
from pipeline.contracts.events import VerdictChange
from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import Origin
from pipeline.contracts.verdict import VerdictCheck

pytestmark = pytest.mark.unit


def test_a_verdict_change_is_one_prominent_line():
    event = VerdictChange(Indicator("domain", "evil.example"), "submit_domain", "v3",
                          VerdictCheck("benign", 0, 70, 1.79e9), VerdictCheck("malicious", 12, 70, 1.79e9 + 86400),
                          sightings=3, first_seen=1.79e9 + 60, origin=Origin(replay="retrohunt-2026-09-22")).to_dict()
    line = format_event(event)
    assert "\n" not in line and line.startswith("*** VERDICT domain evil.example")
    assert "benign -> MALICIOUS" in line and "(0/70 -> 12/70)" in line and "3 sightings since" in line
    assert line.endswith("[replay retrohunt-2026-09-22]")


def test_a_broken_verdict_change_is_shown_not_raised():
    assert "unreadable" in format_event({"kind": "verdict_change", "indicator": "x"})
