"""The results stage's STIX output: one bundle per finished enrichment on indicators.stix.

Kept apart from the stage so the stage only decides *when* (a final answer,
found or not) and this module *what*: the bundle of the mapped answer, marked
with the highest TLP label of every sighting it answers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Mapping

from topics import STIX

from pipeline.contracts.origin import Origin
from pipeline.kafka.runtime import Outbox, send_dead_letter
from pipeline.mapping import Mapped
from pipeline.outputs.stix import StixOptions, build_bundle
from pipeline.rules.fitting import budget, size
from pipeline.rules.labels import Label, origin_labels
from pipeline.rules.verdicts import Standing
from pipeline.settings import Settings


def stix_options(settings: Settings) -> StixOptions:
    """The bundle options the settings give (confidence and tags are ThreatConnect's 'add' settings)."""
    return StixOptions(confidence=settings.outputs.add_confidence, labels=settings.outputs.add_tags,
                       indicator_at=settings.outputs.stix_indicator_at, indicator_valid_s=settings.outputs.stix_indicator_valid_s)


def sighting_labels(origins: Iterable[Origin]) -> list[Label]:
    """Every label of every sighting an answer serves (labels, tags and tlp, read as the policy gate
    reads them): the bundle is marked with the highest TLP among them."""
    return [label for origin in origins for label in origin_labels(origin)]


async def publish_bundle(settings: Settings, out: Outbox, key: bytes, indicator: Mapping[str, str], mapped: Mapped,
                         cause: Origin, waiting: Iterable[Origin], now: float,
                         standing: Standing | None = None) -> tuple[str, ...]:
    """Send the enrichment's bundle, keyed by indicator; an indicator STIX cannot carry goes to vt.dead.

    The observable is the indicator as sent to VirusTotal (a URL without its userinfo and
    secret parameters): what was analysed, and what a shared TAXII feed may show. ``cause`` is
    the sighting whose request VirusTotal answered (a replayed one marks the bundle);
    ``waiting``, the sightings that joined it. ``standing`` (the verdict memory's) dates the
    STIX indicator and names one to revoke. A bundle
    larger than a Kafka record drops related objects first (half of the relations at a
    time), then the per-engine analyses; the notes for the summary card say so.
    """
    labels, options = sighting_labels([cause, *waiting]), stix_options(settings)
    room = budget(settings.kafka.max_record_bytes, key)
    relations = [event for event in mapped.events if event.get("kind") == "relation"]
    others = [event for event in mapped.events if event.get("kind") != "relation"]

    def build(events: list[dict[str, Any]]) -> dict[str, Any]:
        return build_bundle(indicator, events, mapped.summary, labels=labels, options=options, now=now,
                            replay=cause.replay, standing=standing)

    left_out = ""
    try:  # stix2 builds ~1,000 objects a second: off the event loop
        bundle = await asyncio.to_thread(build, mapped.events)
        kept = len(relations)
        while (found := size(bundle)) > room and (kept or others):
            if kept:  # related objects first, in proportion to what is over, at least half each time
                kept = min(kept // 2, kept * room // found)
                events, left_out = [*others, *relations[:kept]], f"{len(relations) - kept} of {len(relations)} related objects"
            else:
                events, left_out, others = [], f"{len(relations)} related objects and the engines' analyses", []
            bundle = await asyncio.to_thread(build, events)
    except ValueError as exc:
        await send_dead_letter(out, "results", key, dict(indicator), None, settings.privacy,
                               reason="no STIX bundle for this indicator", error=str(exc))
        return ()
    await out.send(STIX, key, bundle)
    if not left_out:
        return ()
    return (f"STIX bundle without {left_out}: larger than a Kafka record "
            f"({settings.kafka.max_record_bytes:,} bytes, VTSTREAM_KAFKA_MAX_RECORD_BYTES)",)
