"""VirusTotal's branch of the error tree (drawn in :mod:`pipeline.errors`), and the registry
from HTTP status and VirusTotal error code to class."""

from __future__ import annotations

from pipeline.errors import VtStreamError


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


class Forbidden(VirusTotalError):
    """403: the key is valid but may not use this endpoint."""


class BadRequest(VirusTotalError):
    """400 and similar: VirusTotal refused this particular argument."""


class QuotaExceeded(VirusTotalError):
    """429 in v3, 204 with an empty body in v2."""

    retryable = True


class Redirected(VirusTotalError):
    """3xx: not followed, since the key would go along to wherever it points."""


class ResponseTooLarge(VirusTotalError):
    """The body passed VTSTREAM_VT_MAX_RESPONSE_BYTES; the same request would again."""


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
