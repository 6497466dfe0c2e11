"""The TAXII feed's paging rules: merge partitions by date added, resume where the page stopped."""

from __future__ import annotations

import pytest

from pipeline.errors import InputError
from pipeline.outputs.taxii.feed import Stored, decode_cursor, merge_page, parse_timestamp

pytestmark = pytest.mark.unit


def stored(partition, offset, ts, index=0):
    return Stored(ts, partition, offset, index, {"id": f"x--{partition}-{offset}-{index}"})


def test_pages_cover_every_object_once_even_with_out_of_order_timestamps():
    partitions = {0: [stored(0, o, ts) for o, ts in enumerate([5, 3, 9, 9, 12])],
                  1: [stored(1, o, ts, i) for o, ts in enumerate([1, 4, 10]) for i in range(2)]}
    served, cursor, limit = [], {0: (0, 0), 1: (0, 0)}, 3
    for _ in range(20):
        window = {p: [s for s in items if (s.offset, s.index) >= cursor[p]][:limit + 1]
                  for p, items in partitions.items()}
        resume = {p: ((w[-1].offset, w[-1].index + 1) if w else cursor[p]) for p, w in window.items()}
        page = merge_page(window, resume, limit)
        served += page.objects
        if not page.more:
            break
        cursor = decode_cursor(page.next)
    everything = [s for items in partitions.values() for s in items]
    assert sorted(s.obj["id"] for s in served) == sorted(s.obj["id"] for s in everything)
    assert len(served) == len(everything)


def test_bad_tokens_and_timestamps_are_input_errors():
    with pytest.raises(InputError):
        decode_cursor("not-a-token")
    with pytest.raises(InputError):
        parse_timestamp("yesterday")
    assert parse_timestamp("1970-01-01T00:00:01Z") == 1_000_000
