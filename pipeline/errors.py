"""The error tree. Every error vtstream raises on purpose derives from VtStreamError.

::

    VtStreamError
    ├── ConfigError                 bad settings or mapping files; refuse to start
    │   ├── KafkaAccessDenied       Kafka refused us: credentials, certificates, TLS
    │   │                           where it speaks plaintext or the reverse
    │   └── TemplateError           a mapping's name template cannot be split
    │                               (pipeline.mapping.template; the loader names the file)
    ├── InputError                  a record that is not an indicator; -> vt.dead
    │   └── RecordError             one of vtstream's own records is malformed; -> vt.dead
    ├── DailyQuotaExhausted         our own count says the day's quota is spent (retryable)
    ├── Yielded                     not a failure: a caller gave up its turn at the pace for a
    │                               rebalance or a shutdown; its record re-parks (pipeline.vt.governor)
    ├── AllowanceSpent              a replay's reservation for this work is used up (not retryable)
    └── VirusTotalError             anything the VirusTotal API answered or failed to
                                    (the branch and its registry: pipeline.vt.errors)
        ├── WrongCredentials        401: stop calling, hold records until the key works
        ├── Forbidden               403: the key may not do this           (not retryable)
        ├── BadRequest              400: VirusTotal refused the argument   (not retryable)
        ├── Redirected              3xx: not followed with the key         (not retryable)
        ├── ResponseTooLarge        over VTSTREAM_VT_MAX_RESPONSE_BYTES    (not retryable)
        ├── QuotaExceeded           429 (v3) / 204 (v2): slow down         (retryable)
        ├── ServerError             5xx                                    (retryable)
        ├── TransportError          timeout, refused, reset                (retryable)
        └── MalformedResponse       body is not the JSON we expect         (retryable)

"Not found" is a result, not an error: the client returns it as such.

``retryable`` says whether the same request may succeed later. VirusTotal's
classes are looked up from HTTP status and error code through
:func:`pipeline.vt.errors.error_for`, never compared as strings at call sites.
"""

from __future__ import annotations


class VtStreamError(Exception):
    """Root of every vtstream error."""

    retryable: bool = False


class ConfigError(VtStreamError):
    """A setting or mapping file is invalid; the message names it and the problem."""


class KafkaAccessDenied(ConfigError):
    """Kafka answered but refused this client; retrying cannot help. The message names the setting."""


class InputError(VtStreamError):
    """An input record is not a usable indicator; the message is for a person."""


class RecordError(InputError):
    """A record on one of vtstream's own topics or tables cannot be read (:mod:`pipeline.contracts`).

    The message names the record and the field at fault, so an operator can fix and replay it.
    """

    def __init__(self, record: str, field: str, problem: str) -> None:
        super().__init__(f"malformed {record}: {field} {problem}")
        self.record, self.field = record, field


class DailyQuotaExhausted(VtStreamError):
    """The governor's daily count is spent; ``retry_after`` is the seconds to 00:00 UTC."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AllowanceSpent(VtStreamError):
    """The requests a replay run reserved for this work are spent: one more would pass its ``--budget``."""
