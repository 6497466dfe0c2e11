"""The error tree. Every error vtstream raises on purpose derives from VtStreamError.

::

    VtStreamError
    ├── ConfigError                 bad settings or mapping files; refuse to start
    ├── InputError                  a record that is not an indicator; -> vt.dead
    ├── DailyQuotaExhausted         our own count says the day's quota is spent (retryable)
    └── VirusTotalError             anything the VirusTotal API answered or failed to
        ├── WrongCredentials        401: stop calling, hold records       (fatal)
        ├── Forbidden               403: the key may not do this           (not retryable)
        ├── BadRequest              400: VirusTotal refused the argument   (not retryable)
        ├── QuotaExceeded           429 (v3) / 204 (v2): slow down         (retryable)
        ├── ServerError             5xx                                    (retryable)
        ├── TransportError          timeout, refused, reset                (retryable)
        └── MalformedResponse       body is not the JSON we expect         (retryable)

"Not found" is a result, not an error: the client returns it as such.

``retryable`` says whether the same request may succeed later; ``fatal`` says
that calling again with this key is pointless until an operator acts. Classes
are looked up from HTTP status and VirusTotal error code through
:func:`error_for`, never compared as strings at call sites.
"""

from __future__ import annotations


class VtStreamError(Exception):
    """Root of every vtstream error."""

    retryable: bool = False
    fatal: bool = False


class ConfigError(VtStreamError):
    """A setting or mapping file is invalid; the message names it and the problem."""


class InputError(VtStreamError):
    """An input record is not a usable indicator; the message is for a person."""


class DailyQuotaExhausted(VtStreamError):
    """The governor's daily count is spent; ``retry_after`` is the seconds to 00:00 UTC."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class VirusTotalError(VtStreamError):
    """VirusTotal answered with an error, or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class WrongCredentials(VirusTotalError):
    """401: the API key is wrong or revoked."""

    fatal = True


class Forbidden(VirusTotalError):
    """403: the key is valid but may not use this endpoint."""


class BadRequest(VirusTotalError):
    """400 and similar: VirusTotal refused this particular argument."""


class QuotaExceeded(VirusTotalError):
    """429 in v3, 204 with an empty body in v2."""

    retryable = True


class ServerError(VirusTotalError):
    """5xx from VirusTotal."""

    retryable = True


class TransportError(VirusTotalError):
    """Timeout, connection refused or reset before a full answer arrived."""

    retryable = True


class MalformedResponse(VirusTotalError):
    """The body was truncated or not the JSON shape we expect."""

    retryable = True


_BY_CODE: dict[str, type[VirusTotalError]] = {
    "WrongCredentialsError": WrongCredentials,
    "AuthenticationRequiredError": WrongCredentials,
    "ForbiddenError": Forbidden,
    "UserNotActiveError": Forbidden,
    "QuotaExceededError": QuotaExceeded,
    "TooManyRequestsError": QuotaExceeded,
    "BadRequestError": BadRequest,
    "InvalidArgumentError": BadRequest,
    "UnsupportedContentQueryError": BadRequest,
    "TransientError": ServerError,
    "DeadlineExceededError": ServerError,
}

_BY_STATUS: dict[int, type[VirusTotalError]] = {
    400: BadRequest,
    401: WrongCredentials,
    403: Forbidden,
    429: QuotaExceeded,
}


def error_for(status: int, code: str | None = None) -> type[VirusTotalError]:
    """The error class for an HTTP status and optional VirusTotal error code.

    >>> error_for(429, "QuotaExceededError").__name__
    'QuotaExceeded'
    >>> error_for(503).retryable
    True
    """
    if code and code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return BadRequest
