"""The privacy gate: whether, and in which form, a sighting's indicator may go to VirusTotal.

One decision, taken twice the same way: by intake for every sighting, and by the
gateway at its edge, just before a call, for every request it is about to send.
The edge check exists because intake is not the only way in: anyone who can
produce to ``vt.requests``, ``vt.replay`` or a retry tier reaches the gateway
directly, and a record parked before the rules changed was judged by older rules.
So the gateway normalizes the request's indicator again, then re-runs the whole
gate on it: labels (``labels``, ``tags``, ``tlp`` of the request's origin), the
network rules (addresses, internal and special-use names), and URL privacy.

:func:`judge` is the gate: the policy rules (:mod:`pipeline.rules.policy`), then
URL privacy (:mod:`pipeline.rules.privacy`), then the policy rules again on the
URL as it would be sent (an unwrapped Safe Links target has a host of its own).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pipeline.contracts.indicator import Indicator
from pipeline.contracts.origin import SeenAs
from pipeline.contracts.wire import VtRequest
from pipeline.errors import InputError
from pipeline.rules.indicators import classify
from pipeline.rules.labels import Label, origin_labels
from pipeline.rules.policy import Decision, check
from pipeline.rules.privacy import redact
from pipeline.settings.groups import PolicySettings, UrlPrivacy


@dataclass(frozen=True, slots=True)
class Verdict:
    """What may be sent (``indicator``: a URL redacted or unwrapped) and what was taken out of it,
    or, when ``reason`` is set, why nothing may be sent (``rule`` names the rule for code)."""

    indicator: Indicator
    redacted: tuple[str, ...] = ()
    reason: str | None = None
    rule: str | None = None

    @property
    def allowed(self) -> bool:
        return self.reason is None


def judge(indicator: Indicator, labels: tuple[Label, ...], policy: PolicySettings, privacy: UrlPrivacy) -> Verdict:
    """The gate for ``indicator`` (normalized) seen with ``labels``.

    >>> from pipeline.rules.labels import read_labels
    >>> from pipeline.settings import Settings
    >>> s = Settings()
    >>> judge(Indicator("url", "https://u:p@evil.example.com/?sid=1"), (), s.policy, s.privacy).indicator.value
    'https://evil.example.com/'
    >>> judge(Indicator("ip", "8.8.8.8"), read_labels(["TLP-RED"]), s.policy, s.privacy).rule
    'blocked_label'
    """
    decision = _policy(indicator, labels, policy)
    if not decision.allowed:
        return Verdict(indicator, reason=decision.reason, rule=decision.rule)
    if indicator.type != "url":
        return Verdict(indicator)
    redaction = redact(indicator.value, privacy)
    if redaction.url is None:
        return Verdict(indicator, reason=redaction.reason, rule=redaction.rule)
    if redaction.url == indicator.value:
        return Verdict(indicator)
    sent = Indicator("url", redaction.url)
    decision = _policy(sent, labels, policy)
    if not decision.allowed:
        return Verdict(indicator, reason=f"the link it wraps: {decision.reason}", rule=decision.rule)
    return Verdict(sent, redaction.redacted)


def _policy(indicator: Indicator, labels: tuple[Label, ...], policy: PolicySettings) -> Decision:
    return check(indicator, labels, block_labels=policy.block_labels, allow_labels=policy.allow_labels,
                 internal_domains=policy.internal_domains)


def at_edge(request: VtRequest, policy: PolicySettings, privacy: UrlPrivacy) -> tuple[VtRequest, str | None]:
    """The last check before VirusTotal: the request as it may be sent (its URL redacted, the
    origin noting what the sighting held), or the request and why it is refused (second item).

    >>> from pipeline.contracts.origin import Origin
    >>> from pipeline.settings import Settings
    >>> s = Settings()
    >>> request = VtRequest(Indicator("url", "http://h.example.com/?sid=1"), "submit_url", "v3", Origin())
    >>> at_edge(request, s.policy, s.privacy)[0].indicator
    Indicator(type='url', value='http://h.example.com/')
    """
    indicator = request.indicator
    try:
        normal = classify(indicator.value, indicator.type)
    except InputError as exc:
        return _refused(request), f"the request's {indicator.type} is not one: {exc}"
    verdict = judge(normal, origin_labels(request.origin), policy, privacy)
    if not verdict.allowed:
        return _refused(request), verdict.reason
    if verdict.indicator == indicator:
        return request, None
    noted = request.origin.noting(SeenAs(indicator.value, verdict.redacted or ("normalized",)))
    return replace(request, indicator=verdict.indicator, origin=noted), None


def _refused(request: VtRequest) -> VtRequest:
    """A refused URL request notes that no form of the URL was sent (the summary then shows no ``sent_as``)."""
    if request.indicator.type != "url":
        return request
    return replace(request, origin=replace(request.origin, as_seen=SeenAs(request.indicator.value, sent=False)))
