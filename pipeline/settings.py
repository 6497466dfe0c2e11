"""Settings: one frozen object, built from ``VTSTREAM_*`` environment variables.

This is the only module that reads ``os.environ``. Everything else receives a
``Settings`` instance. Defaults run the demo: a local broker on port 9092 and
the VirusTotal emulator on port 8079 with the emulator's demo key.

Every field is documented in ``SETTINGS_DOC`` (variable, default, meaning);
the README's configuration table and ``vtstream worker --help`` are generated
from it, so the three never disagree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

from mappings import MAPPINGS_DIR

from pipeline.errors import ConfigError
from pipeline.rules.privacy import DEFAULT_SECRET_PARAMS, REDACT_MODES, USERINFO_MODES, UrlPrivacy

#: The emulator accepts this key by default; real deployments set VTSTREAM_VT_API_KEY.
DEMO_API_KEY = "vtstream-demo-key"


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {raw!r}")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(f"must be zero or more, got {value}")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {value}")
    return value


def _api_version(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("v2", "v3"):
        raise ValueError(f"must be 'v3' or 'v2', got {raw!r}")
    return value


def _base_url(raw: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https://, got {raw!r}")
    if "/api/v3" in value or "/vtapi/v2" in value:
        raise ValueError(
            "give scheme and host only (e.g. https://www.virustotal.com); "
            "the client appends /api/v3/... or /vtapi/v2/..."
        )
    return value


def _bootstrap(raw: str) -> str:
    value = raw.strip()
    if value.startswith("kafka://"):
        value = value[len("kafka://"):]
    if not value:
        raise ValueError("must name at least one host:port")
    return value


def _readable_file(raw: str) -> Path:
    path = Path(raw.strip()).expanduser()
    if not path.is_file():
        raise ValueError(f"no readable file at {str(path)!r}")
    return path


def _confidence(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 100:
        raise ValueError(f"confidence must be between 0 and 100, got {value}")
    return value


def _rating(raw: str) -> float:
    value = float(raw)
    if not 0 <= value <= 5:
        raise ValueError(f"rating must be between 0 and 5, got {raw}")
    return value


def _one_of(*choices: str) -> Callable[[str], str]:
    """A parser accepting one of ``choices``, case-insensitively; the value comes back as spelled there."""
    by_folded = {choice.casefold(): choice for choice in choices}

    def parse(raw: str) -> str:
        value = by_folded.get(raw.strip().casefold())
        if value is None:
            raise ValueError(f"must be {', '.join(choices[:-1])} or {choices[-1]}, got {raw!r}")
        return value

    return parse


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {raw!r}")
    return value


def _log_format(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"must be text or json, got {raw!r}")
    return value


def parse_duration(raw: str) -> float:
    """'30s', '2m', '10m', '1h', '1d' or plain seconds -> seconds."""
    text = raw.strip().lower()
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit) and text[: -len(unit)].strip():
            value = float(text[: -len(unit)]) * units[unit]
            break
    else:
        value = float(text)
    if value <= 0:
        raise ValueError(f"must be a positive duration, got {raw!r}")
    return value


def _tiers(raw: str) -> tuple[str, ...]:
    names = _csv(raw)
    if not names:
        raise ValueError("name at least one delay, e.g. 30s,2m,10m,1h")
    delays = [parse_duration(n) for n in names]
    if delays != sorted(set(delays)):
        raise ValueError(f"delays must be distinct and increasing, got {raw!r}")
    return names


def _caps(raw: str) -> tuple[tuple[str, int], ...]:
    """'siem=300,proxy=50' -> (('siem', 300), ('proxy', 50))."""
    caps = []
    for part in _csv(raw):
        name, sep, number = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected source=N pairs, got {part!r}")
        caps.append((name.strip(), _positive_int(number)))
    return tuple(caps)


def _setting(env: str, default: Any, parse: Callable[[str], Any], doc: str, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse, "doc": doc, "secret": secret})


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


OUTPUTS = ("events", "stix")


def _outputs(raw: str) -> tuple[str, ...]:
    names = tuple(name.lower() for name in _csv(raw))
    unknown = [name for name in names if name not in OUTPUTS]
    if unknown or not names:
        raise ValueError(f"name one or more of {', '.join(OUTPUTS)}, got {raw!r}")
    return names


@dataclass(frozen=True)
class Settings:
    """Every knob of a vtstream worker. Build with :meth:`from_env`."""

    kafka_bootstrap: str = _setting(
        "VTSTREAM_KAFKA_BOOTSTRAP", "localhost:9092", _bootstrap,
        "Kafka bootstrap servers, comma-separated host:port.")
    app_id: str = _setting(
        "VTSTREAM_APP_ID", "vtstream", str,
        "Consumer group and faust app id; workers with the same id share the load.")
    partitions: int = _setting(
        "VTSTREAM_PARTITIONS", 4, _positive_int,
        "Partitions of the keyed topics (vt.lookups, vt.responses, the cache changelog). "
        "Fixed once topics exist.")
    session_timeout_s: float = _setting(
        "VTSTREAM_KAFKA_SESSION_TIMEOUT", 30.0, _positive_float,
        "Consumer group session timeout in seconds; a dead worker's partitions move after this.")
    kafka_replication_factor: int | None = _setting(
        "VTSTREAM_KAFKA_REPLICATION_FACTOR", None, _positive_int,
        "Replicas of each topic vtstream creates; unset: 3, or the broker count if fewer. Topics get "
        "min.insync.replicas 2 (1 with a single replica) and every producer waits for acks=all.")
    kafka_unavailable_exit_s: float = _setting(
        "VTSTREAM_KAFKA_UNAVAILABLE_EXIT_S", 300.0, _positive_float,
        "Seconds a worker rides out a Kafka it cannot reach (it keeps reconnecting); after that it "
        "exits non-zero, naming VTSTREAM_KAFKA_BOOTSTRAP.")
    kafka_security_protocol: str = _setting(
        "VTSTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", _one_of(*SECURITY_PROTOCOLS),
        "How every Kafka client connects: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    kafka_sasl_mechanism: str = _setting(
        "VTSTREAM_KAFKA_SASL_MECHANISM", "PLAIN", _one_of(*SASL_MECHANISMS),
        "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str = _setting(
        "VTSTREAM_KAFKA_SASL_USERNAME", "", str.strip, "SASL user name (with SASL_PLAINTEXT or SASL_SSL).")
    kafka_sasl_password: str = _setting(
        "VTSTREAM_KAFKA_SASL_PASSWORD", "", str,
        "SASL password. Never logged; prefer VTSTREAM_KAFKA_SASL_PASSWORD_FILE.", secret=True)
    kafka_sasl_password_file: Path | None = _setting(
        "VTSTREAM_KAFKA_SASL_PASSWORD_FILE", None, _readable_file,
        "File holding the SASL password (a mounted Kubernetes secret); one trailing newline is ignored.")
    kafka_ssl_cafile: Path | None = _setting(
        "VTSTREAM_KAFKA_SSL_CAFILE", None, _readable_file,
        "PEM file of the certificate authorities to trust for the brokers (with SSL or SASL_SSL); "
        "unset: the system's. Host names are always verified.")
    kafka_ssl_certfile: Path | None = _setting(
        "VTSTREAM_KAFKA_SSL_CERTFILE", None, _readable_file,
        "PEM client certificate for mutual TLS (with VTSTREAM_KAFKA_SSL_KEYFILE).")
    kafka_ssl_keyfile: Path | None = _setting(
        "VTSTREAM_KAFKA_SSL_KEYFILE", None, _readable_file,
        "PEM private key of the client certificate, unencrypted.")
    vt_api_key: str = _setting(
        "VTSTREAM_VT_API_KEY", DEMO_API_KEY, str,
        "VirusTotal API key. Never logged. The default is the emulator's demo key.", secret=True)
    vt_base_url: str = _setting(
        "VTSTREAM_VT_BASE_URL", "http://127.0.0.1:8079", _base_url,
        "VirusTotal scheme and host only (https://www.virustotal.com for the real service); "
        "the client appends /api/v3/... or /vtapi/v2/....")
    vt_api_version: str = _setting(
        "VTSTREAM_VT_API_VERSION", "v3", _api_version, "VirusTotal API version: v3 or v2.")
    vt_rate_per_minute: int = _setting(
        "VTSTREAM_VT_RATE_PER_MINUTE", 4, _positive_int,
        "Requests per minute the key allows (public keys: 4). Calls are spaced evenly, no bursts.")
    vt_max_in_flight: int = _setting(
        "VTSTREAM_VT_MAX_IN_FLIGHT", 32, _positive_int,
        "VirusTotal requests the gateway keeps in flight at once. Each still starts only when the pace "
        "allows (evenly spaced); more in flight only hides the answer time (at 1,200/min and 800 ms "
        "answers, 16 are in flight).")
    vt_daily_quota: int = _setting(
        "VTSTREAM_VT_DAILY_QUOTA", 500, _positive_int,
        "Requests per UTC day the key allows (public keys: 500); resets at 00:00 UTC.")
    vt_relationships: tuple[str, ...] = _setting(
        "VTSTREAM_VT_RELATIONSHIPS", (), _csv,
        "v3 relationships to fetch in full (one extra request each per indicator), e.g. "
        "'resolutions,communicating_files'. Empty: descriptors only, one request per indicator.")
    vt_relationship_limit: int = _setting(
        "VTSTREAM_VT_RELATIONSHIP_LIMIT", 40, _positive_int,
        "Objects asked for per relationship (v3 'limit').")
    vt_behaviour: bool = _setting(
        "VTSTREAM_VT_BEHAVIOUR", False, _bool,
        "v3 file lookups that find the file also fetch its sandbox behaviour_summary (one extra request "
        "per file): processes, DLLs, mutexes, file paths, MITRE ATT&CK techniques, DNS and IP traffic.")
    vt_connect_timeout_s: float = _setting(
        "VTSTREAM_VT_CONNECT_TIMEOUT", 5.0, _positive_float,
        "Seconds to wait for a TCP/TLS connection to VirusTotal.")
    vt_read_timeout_s: float = _setting(
        "VTSTREAM_VT_READ_TIMEOUT", 30.0, _positive_float,
        "Seconds to wait for a VirusTotal response body.")
    cache_ttl_s: int = _setting(
        "VTSTREAM_CACHE_TTL", 86400, _positive_int,
        "Seconds a found result is served from the cache without a new call.")
    cache_negative_ttl_s: int = _setting(
        "VTSTREAM_CACHE_NEGATIVE_TTL", 3600, _positive_int,
        "Seconds a 'not found' result is served from the cache.")
    inflight_timeout_s: int = _setting(
        "VTSTREAM_INFLIGHT_TIMEOUT", 26 * 3600, _positive_int,
        "Seconds after which an in-flight lookup with no answer is requested again (longer than "
        "a quota park until midnight).")
    max_waiters: int = _setting(
        "VTSTREAM_MAX_WAITERS", 10000, _positive_int,
        "Duplicates of one in-flight indicator remembered for a summary each; "
        "more get an immediate 'pending' summary.")
    cache_copy_entries: int = _setting(
        "VTSTREAM_CACHE_COPY_ENTRIES", 50000, _positive_int,
        "Finished cache entries each worker keeps in memory (least recently used out) so intake "
        "answers repeats in one hop; about 1 KB each. Others take the lookup stage's hop.")
    block_labels: tuple[str, ...] = _setting(
        "VTSTREAM_BLOCK_LABELS", ("TLP:RED", "TLP:AMBER+STRICT"), _csv,
        "Security labels that are never sent to VirusTotal (case-insensitive).")
    allow_labels: tuple[str, ...] = _setting(
        "VTSTREAM_ALLOW_LABELS", (), _csv,
        "When set, only events carrying one of these labels are sent (ThreatConnect's "
        "'automatically send security labels').")
    internal_domains: tuple[str, ...] = _setting(
        "VTSTREAM_INTERNAL_DOMAINS", (), _csv,
        "Domains (and their subdomains) that are never sent, e.g. 'corp.example,internal'.")
    add_tags: tuple[str, ...] = _setting(
        "VTSTREAM_ADD_TAGS", (), _csv,
        "Tags put on related indicators (ThreatConnect 'tags applied to indicator on an add').")
    add_confidence: int = _setting(
        "VTSTREAM_ADD_CONFIDENCE", 50, _confidence,
        "Confidence 0-100 put on related indicators.")
    add_rating: float = _setting(
        "VTSTREAM_ADD_RATING", 3.0, _rating,
        "Threat rating 0-5 put on related indicators.")
    relation_cap: int = _setting(
        "VTSTREAM_RELATION_CAP", 1000, _positive_int,
        "Most related indicators emitted per relation list; the rest are counted.")
    retry_tiers: tuple[str, ...] = _setting(
        "VTSTREAM_RETRY_TIERS", ("30s", "2m", "10m", "1h"), _tiers,
        "Delays of the delayed-retry topics (vt.retry.<delay>), increasing. Pending scans and "
        "retryable failures climb them one attempt at a time.")
    retry_max_attempts: int = _setting(
        "VTSTREAM_RETRY_MAX_ATTEMPTS", 8, _positive_int,
        "Attempts (polls of a pending scan, retries of a failed call) before a record goes to vt.dead.")
    retry_slice_s: float = _setting(
        "VTSTREAM_RETRY_SLICE", 5.0, parse_duration,
        "Longest single sleep of a retry-tier agent while its head record comes due.")
    url_max_age_s: float = _setting(
        "VTSTREAM_URL_MAX_AGE", 30 * 86400.0, parse_duration,
        "A URL report older than this is rescanned (submit_url); e.g. 7d, 12h.")
    url_userinfo: str = _setting(
        "VTSTREAM_URL_USERINFO", "strip", _one_of(*USERINFO_MODES),
        "A URL's user:password@ part: strip (removed before the lookup, the submission and the "
        "cache key), skip (the URL is not sent) or send.")
    url_redact_params: tuple[str, ...] = _setting(
        "VTSTREAM_URL_REDACT_PARAMS", DEFAULT_SECRET_PARAMS, _csv,
        "URL parameters that carry secrets (case-insensitive, percent-decoded; query, ;path "
        "parameters and fragment). Replaces the default list; empty: none.")
    url_redact_mode: str = _setting(
        "VTSTREAM_URL_REDACT_MODE", "drop", _one_of(*REDACT_MODES),
        "A URL carrying a secret parameter: drop (the parameter is removed before it is sent) or "
        "skip (the URL is not sent).")
    file_root: Path | None = _setting(
        "VTSTREAM_FILE_ROOT", None, Path,
        "Folder that file:// URIs of file events must resolve inside; unset refuses every URI.")
    upload_labels: tuple[str, ...] = _setting(
        "VTSTREAM_UPLOAD_LABELS", (), _csv,
        "Labels that allow uploading a file VirusTotal does not know. Empty: never upload.")
    vt_monthly_quota: int = _setting(
        "VTSTREAM_VT_MONTHLY_QUOTA", 0, _non_negative_int,
        "Requests per calendar month (UTC) the key allows; 0 means no monthly limit.")
    source_daily_caps: tuple[tuple[str, int], ...] = _setting(
        "VTSTREAM_SOURCE_DAILY_CAPS", (), _caps,
        "Per-source daily request caps, e.g. 'siem=300,proxy=50', so one noisy feed cannot drain the key.")
    mappings_dir: Path = _setting(
        "VTSTREAM_MAPPINGS_DIR", MAPPINGS_DIR, Path, "Folder of mapping files (v2/, v3/).")
    store: str = _setting(
        "VTSTREAM_STORE", "rocksdb://", str,
        "faust table store: rocksdb:// (disk-backed) or memory://.")
    data_dir: Path = _setting(
        "VTSTREAM_DATA_DIR", Path(".vtstream-data"), Path,
        "Folder for the worker's local table state, one subfolder per cluster id and app id "
        "(<cluster id>.<app id>); a store that disagrees with its changelog is rebuilt from it.")
    web_port: int = _setting(
        "VTSTREAM_WEB_PORT", 6066, _non_negative_int,
        "Port of the worker's web server (/metrics, /health, /ready); 0 disables it.")
    outputs: tuple[str, ...] = _setting(
        "VTSTREAM_OUTPUTS", ("events",), _outputs,
        "What the results stage publishes: 'events' (indicators.enriched), 'stix' (one STIX 2.1 bundle "
        "per enrichment on indicators.stix), or both: 'events,stix'.")
    stix_indicator_at: int = _setting(
        "VTSTREAM_STIX_INDICATOR_AT", 5, _positive_int,
        "Positives from which a STIX bundle carries an indicator (a STIX pattern) besides the analysis.")
    stix_indicator_valid_s: float = _setting(
        "VTSTREAM_STIX_INDICATOR_VALID", 30 * 86400.0, parse_duration,
        "How long a STIX indicator stays valid (valid_until), e.g. 30d, 12h.")
    taxii_username: str = _setting(
        "VTSTREAM_TAXII_USERNAME", "", str,
        "HTTP Basic user of 'vtstream taxii'; without user and password it refuses to start "
        "(unless VTSTREAM_TAXII_ANONYMOUS).")
    taxii_password: str = _setting(
        "VTSTREAM_TAXII_PASSWORD", "", str, "HTTP Basic password of 'vtstream taxii'. Never logged.", secret=True)
    taxii_anonymous: bool = _setting(
        "VTSTREAM_TAXII_ANONYMOUS", False, _bool,
        "Let 'vtstream taxii' answer requests without credentials (read-only feed for anyone who reaches it).")
    taxii_cert: Path | None = _setting(
        "VTSTREAM_TAXII_CERT", None, _readable_file,
        "PEM certificate (chain) for 'vtstream taxii' to serve HTTPS; with VTSTREAM_TAXII_KEY. Unset: HTTP.")
    taxii_key: Path | None = _setting(
        "VTSTREAM_TAXII_KEY", None, _readable_file, "PEM private key for VTSTREAM_TAXII_CERT.")
    log_level: str = _setting(
        "VTSTREAM_LOG_LEVEL", "INFO", _log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: str = _setting(
        "VTSTREAM_LOG_FORMAT", "text", _log_format,
        "text, or json: one JSON object per log line with the stage and the indicator key.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every ``VTSTREAM_*`` variable; a bad value raises ConfigError naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{f.metadata['env']}={raw!r} is invalid: {exc}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.check_kafka_security()
        return settings

    def check_kafka_security(self) -> None:
        """Refuse combinations of the Kafka security settings that cannot connect."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            if not self.kafka_sasl_username:
                raise ConfigError(f"VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs VTSTREAM_KAFKA_SASL_USERNAME")
            if bool(self.kafka_sasl_password) == bool(self.kafka_sasl_password_file):
                raise ConfigError(f"VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs exactly one of "
                                  "VTSTREAM_KAFKA_SASL_PASSWORD and VTSTREAM_KAFKA_SASL_PASSWORD_FILE")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ConfigError("mutual TLS needs both VTSTREAM_KAFKA_SSL_CERTFILE and VTSTREAM_KAFKA_SSL_KEYFILE")
        uses_tls = protocol in ("SSL", "SASL_SSL")
        if not uses_tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile):
            raise ConfigError(f"VTSTREAM_KAFKA_SSL_* files are set but VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} "
                              "does not use TLS: set it to SSL or SASL_SSL")

    @cached_property
    def url_privacy(self) -> UrlPrivacy:
        """The three VTSTREAM_URL_* privacy settings as one rule object (pipeline.rules.privacy)."""
        return UrlPrivacy.of(self.url_userinfo, self.url_redact_params, self.url_redact_mode)

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (tests, CLI flags)."""
        return replace(self, **changes)

    def __repr__(self) -> str:  # never print a secret
        shown = ", ".join(
            f"{f.name}={'***' if f.metadata['secret'] else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"


def settings_doc() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join("=".join(map(str, d)) if isinstance(d, tuple) else d for d in default)
        elif isinstance(default, bool):  # as a user writes it in the environment
            default = "true" if default else "false"
        elif f.name == "mappings_dir":
            default = "<package>/mappings"
        rows.append((f.metadata["env"], str(default), f.metadata["doc"]))
    return rows
