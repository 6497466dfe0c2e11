"""The settings, grouped into small frozen value objects, one per concern.

Each field is one ``VTSTREAM_*`` variable (:func:`setting`: its name, its parser,
what it means, whether it is a secret). A rule takes the group it needs (the
cache rules take :class:`CacheSettings`, the policy gate :class:`PolicySettings`),
never the whole :class:`~pipeline.settings.Settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import re

from pipeline.settings import values as v


def setting(env: str, default: Any, parse: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    """One field: its environment variable, default, parser and meaning."""
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc, "secret": secret})


class Group:
    """A settings group: its repr never shows a secret."""

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={'***' if f.metadata.get('secret') else getattr(self, f.name)!r}"
                          for f in fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{type(self).__name__}({shown})"


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: What the results stage can publish.
OUTPUTS = ("events", "stix")
USERINFO_MODES: tuple[str, ...] = ("strip", "skip", "send")
REDACT_MODES: tuple[str, ...] = ("drop", "skip")

#: Kafka's own default limit of one record batch (message.max.bytes): vtstream's default record limit.
DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
#: The smallest record limit accepted: a dead letter keeps 64 KiB of its original.
MIN_MAX_RECORD_BYTES = 128 * 1024

#: The emulator accepts this key by default; real deployments set VTSTREAM_VT_API_KEY.
DEMO_API_KEY = "vtstream-demo-key"

#: URL parameters removed by default. Credentials and session or one-time tokens of
#: login, password-reset, magic-link and OAuth / OpenID / SAML / CAS links (OWASP's
#: session-management and OAuth cheat sheets; the parameter names secret scanners such
#: as gitleaks and trufflehog look for), then signed-URL parameters:
#: AWS SigV4 (X-Amz-*) and SigV2 (AWSAccessKeyId, Signature), GCS V4 (X-Goog-*)
#: and V2 (GoogleAccessId, Signature), Azure SAS (``sig``). Of Azure's SAS
#: parameters only ``sig`` is a secret: it is the HMAC that grants access, and a
#: SAS without it grants nothing; ``sv``, ``se``, ``st``, ``sp``, ``sr``, ``ss``,
#: ``srt``, ``spr``, ``sip`` describe the grant (version, expiry, start,
#: permissions, resource, protocol, address range) and stay, as they show the link
#: was a SAS. ``skoid`` and ``sktid`` (user delegation SAS) name the Entra ID user
#: and tenant that signed, so they go too. Servlet, PHP, ASP.NET and ColdFusion
#: session ids (``jsessionid``, ``phpsessid``, ``aspsessionid``, ``cfid``/``cftoken``)
#: are sessions under other names. Names are compared without ``-``, ``_`` and ``.``,
#: so ``access_token`` also covers ``accessToken`` and ``access-token``.
DEFAULT_SECRET_PARAMS: tuple[str, ...] = (
    # tokens and sessions
    "token", "access_token", "id_token", "refresh_token", "auth_token", "oauth_token", "oauth_verifier",
    "oauth_signature", "private_token", "session_token", "api_token", "bearer", "jwt", "assertion",
    "client_assertion", "code", "code_verifier", "session", "sessionid", "sid", "jsessionid", "phpsessid",
    "aspsessionid", "cfid", "cftoken", "csrf_token", "csrfmiddlewaretoken", "authenticity_token",
    "xsrf_token", "ticket", "SAMLResponse", "SAMLart", "otp", "totp", "mfa_code", "verification_code",
    "reset_token", "magic", "login_token", "invite_token", "confirmation_token",
    # passwords and keys
    "password", "passwd", "pwd", "pass", "passcode", "key", "apikey", "api_key", "access_key", "secret_key",
    "private_key", "secret", "client_secret", "app_secret", "consumer_secret", "credentials",
    "auth", "authorization",
    # signed URLs
    "sig", "signature", "hmac",
    "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId",
    "X-Goog-Signature", "X-Goog-Credential", "GoogleAccessId",
    "skoid", "sktid",
)
#: The shapes of secret values VTSTREAM_URL_REDACT_VALUES can name (:mod:`pipeline.rules.shapes` finds them).
VALUE_KINDS: tuple[str, ...] = ("jwt", "email")
_NAME_SEPARATORS = re.compile(r"[-_.]")


@dataclass(frozen=True, repr=False)
class KafkaSettings(Group):
    """How every Kafka client of vtstream connects, and how its keyed topics are laid out."""

    bootstrap: str = setting(
        "VTSTREAM_KAFKA_BOOTSTRAP", "localhost:9092", v.bootstrap,
        "Kafka bootstrap servers, comma-separated host:port.")
    partitions: int = setting(
        "VTSTREAM_PARTITIONS", 4, v.positive_int,
        "Partitions of the keyed topics (vt.lookups, vt.responses, the cache changelog). "
        "Fixed once topics exist.")
    max_record_bytes: int = setting(
        "VTSTREAM_KAFKA_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, v.at_least(MIN_MAX_RECORD_BYTES),
        "Largest record vtstream writes, in bytes (at least 131072). Topics it creates get it as "
        "max.message.bytes, its producers as max.request.size; a larger output is trimmed or goes to "
        "vt.dead. The brokers' message.max.bytes and replica.fetch.max.bytes must allow it.")
    session_timeout_s: float = setting(
        "VTSTREAM_KAFKA_SESSION_TIMEOUT", 30.0, v.positive_float,
        "Consumer group session timeout in seconds; a dead worker's partitions move after this.")
    security_protocol: str = setting(
        "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", v.one_of(*SECURITY_PROTOCOLS),
        "How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    sasl_mechanism: str = setting(
        "VTSTREAM_KAFKA_SASL_MECHANISM", "PLAIN", v.one_of(*SASL_MECHANISMS),
        "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    sasl_username: str = setting(
        "VTSTREAM_KAFKA_SASL_USERNAME", "", str.strip, "SASL user name (with SASL_PLAINTEXT or SASL_SSL).")
    sasl_password: str = setting(
        "VTSTREAM_KAFKA_SASL_PASSWORD", "", str,
        "SASL password. Never logged; prefer VTSTREAM_KAFKA_SASL_PASSWORD_FILE.", secret=True)
    sasl_password_file: Path | None = setting(
        "VTSTREAM_KAFKA_SASL_PASSWORD_FILE", None, v.readable_file,
        "File holding the SASL password (a mounted Kubernetes secret); one trailing newline is ignored.")
    ssl_cafile: Path | None = setting(
        "VTSTREAM_KAFKA_SSL_CAFILE", None, v.readable_file,
        "PEM file of the certificate authorities to trust for the brokers (with SSL or SASL_SSL); "
        "unset: the system's. Host names are always verified.")
    ssl_certfile: Path | None = setting(
        "VTSTREAM_KAFKA_SSL_CERTFILE", None, v.readable_file,
        "PEM client certificate for mutual TLS (with VTSTREAM_KAFKA_SSL_KEYFILE).")
    ssl_keyfile: Path | None = setting(
        "VTSTREAM_KAFKA_SSL_KEYFILE", None, v.readable_file,
        "PEM private key of the client certificate, unencrypted.")
    replication_factor: int | None = setting(
        "VTSTREAM_KAFKA_REPLICATION_FACTOR", None, v.positive_int,
        "Replicas of each topic vtstream creates; unset: 3, or the broker count if fewer. Topics get "
        "min.insync.replicas 2 (1 with a single replica) and every producer waits for acks=all.")
    unavailable_exit_s: float = setting(
        "VTSTREAM_KAFKA_UNAVAILABLE_EXIT_S", 300.0, v.positive_float,
        "Seconds a worker rides out a Kafka it cannot reach (it keeps reconnecting); after that it "
        "exits non-zero, naming VTSTREAM_KAFKA_BOOTSTRAP.")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")


@dataclass(frozen=True, repr=False)
class VtSettings(Group):
    """The VirusTotal API: where, with which key, how fast, how much, and what to fetch."""

    api_key: str = setting(
        "VTSTREAM_VT_API_KEY", DEMO_API_KEY, str,
        "VirusTotal API key. Never logged; prefer VTSTREAM_VT_API_KEY_FILE. The default is the emulator's "
        "demo key.", secret=True)
    api_key_file: Path | None = setting(
        "VTSTREAM_VT_API_KEY_FILE", None, v.readable_file,
        "File holding the VirusTotal API key (a mounted Kubernetes secret), read at start; one trailing "
        "newline is ignored. Set this or VTSTREAM_VT_API_KEY, not both.")
    base_url: str = setting(
        "VTSTREAM_VT_BASE_URL", "http://127.0.0.1:8079", v.base_url,
        "VirusTotal scheme and host only (https://www.virustotal.com for the real service); "
        "the client appends /api/v3/... or /vtapi/v2/.... Must be https:// unless the host is loopback "
        "(or the key is the emulator's demo key); redirects are never followed with the key.")
    max_response_bytes: int = setting(
        "VTSTREAM_VT_MAX_RESPONSE_BYTES", 32 * 1024 * 1024, v.positive_int,
        "Largest VirusTotal response body read (after decompression); a larger answer is an error "
        "naming this setting, never a worker out of memory.")
    api_version: str = setting(
        "VTSTREAM_VT_API_VERSION", "v3", v.api_version, "VirusTotal API version: v3 or v2.")
    rate_per_minute: int = setting(
        "VTSTREAM_VT_RATE_PER_MINUTE", 4, v.positive_int,
        "Requests per minute the key allows (public keys: 4). Calls are spaced evenly, no bursts.")
    max_in_flight: int = setting(
        "VTSTREAM_VT_MAX_IN_FLIGHT", 32, v.positive_int,
        "VirusTotal requests the gateway keeps in flight at once. Each still starts only when the pace "
        "allows (evenly spaced); more in flight only hides the answer time (at 1,200/min and 800 ms "
        "answers, 16 are in flight).")
    daily_quota: int = setting(
        "VTSTREAM_VT_DAILY_QUOTA", 500, v.positive_int,
        "Requests per UTC day the key allows (public keys: 500); resets at 00:00 UTC.")
    monthly_quota: int = setting(
        "VTSTREAM_VT_MONTHLY_QUOTA", 0, v.non_negative_int,
        "Requests per calendar month (UTC) the key allows; 0 means no monthly limit.")
    source_daily_caps: tuple[tuple[str, int], ...] = setting(
        "VTSTREAM_SOURCE_DAILY_CAPS", (), v.caps,
        "Per-source daily request caps, e.g. 'siem=300,proxy=50', so one noisy feed cannot drain the key.")
    relationships: tuple[str, ...] = setting(
        "VTSTREAM_VT_RELATIONSHIPS", (), v.csv_list,
        "v3 relationships to fetch in full (one extra request each per indicator), e.g. "
        "'resolutions,communicating_files'. Empty: descriptors only, one request per indicator.")
    relationship_limit: int = setting(
        "VTSTREAM_VT_RELATIONSHIP_LIMIT", 40, v.positive_int,
        "Objects asked for per relationship (v3 'limit').")
    behaviour: bool = setting(
        "VTSTREAM_VT_BEHAVIOUR", False, v.boolean,
        "v3 file lookups that find the file also fetch its sandbox behaviour_summary (one extra request "
        "per file): processes, DLLs, mutexes, file paths, MITRE ATT&CK techniques, DNS and IP traffic.")
    connect_timeout_s: float = setting(
        "VTSTREAM_VT_CONNECT_TIMEOUT", 5.0, v.positive_float,
        "Seconds to wait for a TCP/TLS connection to VirusTotal.")
    read_timeout_s: float = setting(
        "VTSTREAM_VT_READ_TIMEOUT", 30.0, v.positive_float,
        "Seconds to wait for a VirusTotal response body.")
    url_max_age_s: float = setting(
        "VTSTREAM_URL_MAX_AGE", 30 * 86400.0, v.parse_duration,
        "A URL report older than this is rescanned (submit_url); e.g. 7d, 12h.")


@dataclass(frozen=True, repr=False)
class PolicySettings(Group):
    """What may leave for VirusTotal: the policy gate's labels and domains, and file uploads."""

    block_labels: tuple[str, ...] = setting(
        "VTSTREAM_BLOCK_LABELS", ("TLP:RED", "TLP:AMBER+STRICT", "PAP:RED"), v.csv_list,
        "Security labels that are never sent to VirusTotal, read from an event's labels, tags and tlp "
        "(Unicode-normalized, case-insensitive, TLP-RED = TLP:RED); a TLP or PAP level also blocks every "
        "stricter level, and a TLP or PAP label vtstream cannot read always blocks.")
    allow_labels: tuple[str, ...] = setting(
        "VTSTREAM_ALLOW_LABELS", (), v.csv_list,
        "When set, only events carrying one of these labels are sent (ThreatConnect's "
        "'automatically send security labels').")
    internal_domains: tuple[str, ...] = setting(
        "VTSTREAM_INTERNAL_DOMAINS", (), v.csv_list,
        "Domains (and their subdomains) that are never sent, e.g. 'corp.example,internal'.")
    file_root: Path | None = setting(
        "VTSTREAM_FILE_ROOT", None, Path,
        "Folder that file:// URIs of file events must resolve inside; unset refuses every URI.")
    upload_labels: tuple[str, ...] = setting(
        "VTSTREAM_UPLOAD_LABELS", (), v.csv_list,
        "Labels that allow uploading a file VirusTotal does not know. Empty: never upload.")


@dataclass(frozen=True, repr=False)
class UrlPrivacy(Group):
    """URL privacy: what of a URL may go to VirusTotal (:mod:`pipeline.rules.privacy` applies it)."""

    userinfo: str = setting(
        "VTSTREAM_URL_USERINFO", "strip", v.one_of(*USERINFO_MODES),
        "A URL's user:password@ part: strip (removed before the lookup, the submission and the "
        "cache key), skip (the URL is not sent) or send.")
    redact_params: tuple[str, ...] = setting(
        "VTSTREAM_URL_REDACT_PARAMS", DEFAULT_SECRET_PARAMS, v.csv_list,
        "URL parameters that carry secrets (compared percent-decoded, case-folded and without - _ or ., "
        "so accessToken is access_token; query, ;path parameters and fragment). Replaces the default list; "
        "empty: none.")
    redact_values: tuple[str, ...] = setting(
        "VTSTREAM_URL_REDACT_VALUES", VALUE_KINDS, v.subset_of(VALUE_KINDS),
        "Shapes of secret values: a query, ;path or fragment value holding a JWT (jwt) or an e-mail "
        "address (email), percent-decoded, is redacted whatever its name, as a secret parameter is. "
        "Empty: by name only.")
    mode: str = setting(
        "VTSTREAM_URL_REDACT_MODE", "drop", v.one_of(*REDACT_MODES),
        "A URL carrying a secret parameter: drop (the parameter is removed before it is sent) or "
        "skip (the URL is not sent).")
    params: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = frozenset(_param_key(name) for name in self.redact_params if _param_key(name))
        object.__setattr__(self, "params", names)

    def is_secret(self, raw_name: str) -> bool:
        """Whether a parameter name, as written in a URL, names a secret (percent-decoded, case-folded,
        without ``-``, ``_`` or ``.``, a PHP-style ``name[]`` counting as ``name``).

        >>> UrlPrivacy().is_secret("%54oken[]"), UrlPrivacy().is_secret("accessToken")
        (True, True)
        """
        name = unquote(raw_name.replace("+", " ")).strip()
        return _param_key(_without_array_suffix(name)) in self.params


def _param_key(name: str) -> str:
    """How parameter names are compared: ``X-Amz-Signature`` and ``x_amz.signature`` are one name."""
    return _NAME_SEPARATORS.sub("", name.strip()).casefold()


def _without_array_suffix(name: str) -> str:
    """``name[]`` or ``name[key]`` -> ``name``: the last ``[...]`` that ends the name, found in linear
    time (the pattern ``\\[[^\\]]*\\]$`` rescanned the rest of the name from every ``[``).

    >>> _without_array_suffix("token[a[b]"), _without_array_suffix("a[b][c]"), _without_array_suffix("[[[")
    ('token', 'a[b]', '[[[')
    """
    if not name.endswith("]"):
        return name
    opening = name.find("[", name.rfind("]", 0, len(name) - 1) + 1)
    return name if opening < 0 else name[:opening]


@dataclass(frozen=True, repr=False)
class CacheSettings(Group):
    """How long answers are served from the cache, and how duplicates of a lookup in flight wait."""

    ttl_s: int = setting(
        "VTSTREAM_CACHE_TTL", 86400, v.positive_int,
        "Seconds a found result is served from the cache without a new call.")
    negative_ttl_s: int = setting(
        "VTSTREAM_CACHE_NEGATIVE_TTL", 3600, v.positive_int,
        "Seconds a 'not found' result is served from the cache.")
    inflight_timeout_s: int = setting(
        "VTSTREAM_INFLIGHT_TIMEOUT", 26 * 3600, v.positive_int,
        "Seconds after which an in-flight lookup with no answer is requested again (longer than "
        "a quota park until midnight).")
    max_waiters: int = setting(
        "VTSTREAM_MAX_WAITERS", 10000, v.positive_int,
        "Duplicates of one in-flight indicator remembered for a summary each; "
        "more get an immediate 'pending' summary.")
    copy_entries: int = setting(
        "VTSTREAM_CACHE_COPY_ENTRIES", 50000, v.positive_int,
        "Finished cache entries each worker keeps in memory (least recently used out) so intake "
        "answers repeats in one hop; about 1 KB each. Others take the lookup stage's hop.")
    copy_max_bytes: int = setting(
        "VTSTREAM_CACHE_COPY_MAX_BYTES", 64 * 1024 * 1024, v.positive_int,
        "Bytes the in-memory cache copy may hold (its entries' changelog bytes); whichever of this and "
        "VTSTREAM_CACHE_COPY_ENTRIES is reached first evicts the least recently used.")


@dataclass(frozen=True, repr=False)
class RetrySettings(Group):
    """The delayed-retry topics: their delays, and how often a record may climb them."""

    tiers: tuple[str, ...] = setting(
        "VTSTREAM_RETRY_TIERS", ("30s", "2m", "10m", "1h"), v.tiers,
        "Delays of the delayed-retry topics (vt.retry.<delay>), increasing. Pending scans and "
        "retryable failures climb them one attempt at a time.")
    max_attempts: int = setting(
        "VTSTREAM_RETRY_MAX_ATTEMPTS", 8, v.positive_int,
        "Attempts (polls of a pending scan, retries of a failed call) before a record goes to vt.dead.")
    slice_s: float = setting(
        "VTSTREAM_RETRY_SLICE", 5.0, v.parse_duration,
        "Longest single sleep of a retry-tier agent while its head record comes due.")


@dataclass(frozen=True, repr=False)
class OutputSettings(Group):
    """What the results stage publishes, and what it puts on what it publishes."""

    publish: tuple[str, ...] = setting(
        "VTSTREAM_OUTPUTS", ("events",), v.outputs_list(OUTPUTS),
        "What the results stage publishes: 'events' (indicators.enriched), 'stix' (one STIX 2.1 bundle "
        "per enrichment on indicators.stix), or both: 'events,stix'.")
    add_tags: tuple[str, ...] = setting(
        "VTSTREAM_ADD_TAGS", (), v.csv_list,
        "Tags put on related indicators (ThreatConnect 'tags applied to indicator on an add').")
    add_confidence: int = setting(
        "VTSTREAM_ADD_CONFIDENCE", 50, v.confidence,
        "Confidence 0-100 put on related indicators.")
    add_rating: float = setting(
        "VTSTREAM_ADD_RATING", 3.0, v.rating,
        "Threat rating 0-5 put on related indicators.")
    relation_cap: int = setting(
        "VTSTREAM_RELATION_CAP", 1000, v.positive_int,
        "Most related indicators emitted per relation list; the rest are counted.")
    stix_indicator_at: int = setting(
        "VTSTREAM_STIX_INDICATOR_AT", 5, v.positive_int,
        "Positives from which a STIX bundle carries an indicator (a STIX pattern) besides the analysis.")
    stix_indicator_valid_s: float = setting(
        "VTSTREAM_STIX_INDICATOR_VALID", 30 * 86400.0, v.parse_duration,
        "How long a STIX indicator stays valid (valid_until), e.g. 30d, 12h.")
    verdict_changes: bool = setting(
        "VTSTREAM_VERDICT_CHANGES", True, v.boolean,
        "Publish a verdict_change event when a lookup gives another verdict (malicious, suspicious, benign, "
        "unknown) than the last one known for the indicator, and revoke its STIX indicator when it stops "
        "being malicious. false: neither, and no verdict memory is kept.")
    verdict_memory_s: float = setting(
        "VTSTREAM_VERDICT_MEMORY", 90 * 86400.0, v.parse_duration,
        "How long the last verdict of an indicator is remembered (beyond the cache TTL) to tell a change, "
        "e.g. 90d. Also the retention of its changelog topic (fixed once the topic exists).")


@dataclass(frozen=True, repr=False)
class ReplaySettings(Group):
    """Replays of history (``vtstream replay``), and the daily retro-hunt that runs one."""

    retrohunt_budget: v.Share = setting(
        "VTSTREAM_RETROHUNT_BUDGET", v.Share(0.15), v.share,
        "The share of VTSTREAM_VT_DAILY_QUOTA a replay may spend when it is given no --budget, e.g. 15% "
        "or 0.15 (the daily retro-hunt CronJob passes it as --budget); the live lane keeps the rest.")


@dataclass(frozen=True, repr=False)
class WebSettings(Group):
    """The worker's web port."""

    port: int = setting(
        "VTSTREAM_WEB_PORT", 6066, v.non_negative_int,
        "Port of the worker's web server (/metrics, /health, /ready); 0 disables it.")


@dataclass(frozen=True, repr=False)
class MispFeedSettings(Group):
    """``vtstream misp-feed``: who may read it, how it is served, and how much it holds."""

    username: str = setting(
        "VTSTREAM_MISP_FEED_USERNAME", "", str,
        "HTTP Basic user of 'vtstream misp-feed'; without user and password it refuses to start "
        "(unless VTSTREAM_MISP_FEED_ANONYMOUS).")
    password: str = setting(
        "VTSTREAM_MISP_FEED_PASSWORD", "", str,
        "HTTP Basic password of 'vtstream misp-feed'. Never logged; prefer VTSTREAM_MISP_FEED_PASSWORD_FILE.",
        secret=True)
    password_file: Path | None = setting(
        "VTSTREAM_MISP_FEED_PASSWORD_FILE", None, v.readable_file,
        "File holding the 'vtstream misp-feed' password (a mounted secret); one trailing newline is ignored.")
    anonymous: bool = setting(
        "VTSTREAM_MISP_FEED_ANONYMOUS", False, v.boolean,
        "Let 'vtstream misp-feed' answer requests without credentials (a feed anyone who reaches it may read).")
    cert: Path | None = setting(
        "VTSTREAM_MISP_FEED_CERT", None, v.readable_file,
        "PEM certificate (chain) for 'vtstream misp-feed' to serve HTTPS; with VTSTREAM_MISP_FEED_KEY. Unset: HTTP.")
    key: Path | None = setting(
        "VTSTREAM_MISP_FEED_KEY", None, v.readable_file, "PEM private key for VTSTREAM_MISP_FEED_CERT.")
    insecure: bool = setting(
        "VTSTREAM_MISP_FEED_INSECURE", False, v.boolean,
        "Let 'vtstream misp-feed' serve plain HTTP on an address beyond loopback (e.g. behind a TLS proxy).")
    days: int = setting(
        "VTSTREAM_MISP_FEED_DAYS", 30, v.positive_int,
        "UTC days the MISP feed serves (one event each, today included); older days leave the manifest.")
    max_indicators: int = setting(
        "VTSTREAM_MISP_FEED_MAX_INDICATORS", 10000, v.positive_int,
        "Most indicators in one day's MISP event; past it, a detected indicator replaces an undetected one "
        "and other new ones are left out (counted in the log).")


@dataclass(frozen=True, repr=False)
class TaxiiSettings(Group):
    """``vtstream taxii``: who may read it, how it is served, what one request may cost, how it reads Kafka."""

    username: str = setting(
        "VTSTREAM_TAXII_USERNAME", "", str,
        "HTTP Basic user of 'vtstream taxii'; without user and password it refuses to start "
        "(unless VTSTREAM_TAXII_ANONYMOUS).")
    password: str = setting(
        "VTSTREAM_TAXII_PASSWORD", "", str,
        "HTTP Basic password of 'vtstream taxii'. Never logged; prefer VTSTREAM_TAXII_PASSWORD_FILE.", secret=True)
    password_file: Path | None = setting(
        "VTSTREAM_TAXII_PASSWORD_FILE", None, v.readable_file,
        "File holding the 'vtstream taxii' password (a mounted secret); one trailing newline is ignored.")
    anonymous: bool = setting(
        "VTSTREAM_TAXII_ANONYMOUS", False, v.boolean,
        "Let 'vtstream taxii' answer requests without credentials (read-only feed for anyone who reaches it).")
    cert: Path | None = setting(
        "VTSTREAM_TAXII_CERT", None, v.readable_file,
        "PEM certificate (chain) for 'vtstream taxii' to serve HTTPS; with VTSTREAM_TAXII_KEY. Unset: HTTP.")
    key: Path | None = setting(
        "VTSTREAM_TAXII_KEY", None, v.readable_file, "PEM private key for VTSTREAM_TAXII_CERT.")
    insecure: bool = setting(
        "VTSTREAM_TAXII_INSECURE", False, v.boolean,
        "Let 'vtstream taxii' serve plain HTTP on an address beyond loopback (behind a TLS-terminating proxy); "
        "without it, such an address needs VTSTREAM_TAXII_CERT and VTSTREAM_TAXII_KEY.")
    request_deadline_s: float = setting(
        "VTSTREAM_TAXII_REQUEST_DEADLINE", 10.0, v.parse_duration,
        "How long one TAXII request may read Kafka, waiting for the reader included; a request that cannot "
        "start in time gets 503, one that runs out serves what it read with 'more' and 'next'.")
    scan_budget: int = setting(
        "VTSTREAM_TAXII_SCAN_BUDGET", 10000, v.positive_int,
        "Most bundle records one TAXII request reads; filters (match[id], match[type], objects/{id}/) "
        "that find little continue through 'next'.")
    kafka_sasl_username: str = setting(
        "VTSTREAM_TAXII_KAFKA_SASL_USERNAME", "", str.strip,
        "SASL user 'vtstream taxii' reads indicators.stix as (read-only ACLs: docs/taxii.md); "
        "unset: the worker's VTSTREAM_KAFKA_SASL_USERNAME.")
    kafka_sasl_password: str = setting(
        "VTSTREAM_TAXII_KAFKA_SASL_PASSWORD", "", str,
        "SASL password of VTSTREAM_TAXII_KAFKA_SASL_USERNAME. Never logged; prefer the _FILE form.", secret=True)
    kafka_sasl_password_file: Path | None = setting(
        "VTSTREAM_TAXII_KAFKA_SASL_PASSWORD_FILE", None, v.readable_file,
        "File holding VTSTREAM_TAXII_KAFKA_SASL_USERNAME's password; one trailing newline is ignored.")
