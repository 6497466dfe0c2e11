"""Settings: one frozen object, built from ``VTSTREAM_*`` environment variables.

This is the only module that reads ``os.environ``. Everything else receives a
:class:`Settings` instance, or the group of it that it needs. Defaults run the
demo: a local broker on port 9092 and the VirusTotal emulator on port 8079
with the emulator's demo key.

Every field is documented where it is declared (variable, default, meaning);
``docs/configuration.md``, ``vtstream config`` and ``vtstream worker --help``
are generated from those rows, so they never disagree.
"""

from __future__ import annotations

import os
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from mappings import MAPPINGS_DIR

from pipeline.errors import ConfigError
from pipeline.settings import values as v
from pipeline.settings.groups import (DEMO_API_KEY, CacheSettings, KafkaSettings, MispFeedSettings, OutputSettings,
                                      PolicySettings, ReplaySettings, RetrySettings, TaxiiSettings, UrlPrivacy,
                                      VtSettings, WebSettings, setting)


def _group(kind: type, title: str) -> Any:
    return field(default_factory=kind, metadata={"group": title, "kind": kind})


@dataclass(frozen=True)
class Settings:
    """Every knob of a vtstream worker, grouped. Build with :meth:`from_env` (or :meth:`of` in tests)."""

    app_id: str = setting(
        "VTSTREAM_APP_ID", "vtstream", str,
        "Consumer group and faust app id; workers with the same id share the load.")
    store: str = setting(
        "VTSTREAM_STORE", "rocksdb://", str,
        "faust table store: rocksdb:// (disk-backed) or memory://.")
    data_dir: Path = setting(
        "VTSTREAM_DATA_DIR", Path(".vtstream-data"), Path,
        "Folder for the worker's local table state, one subfolder per cluster id and app id "
        "(<cluster id>.<app id>); a store that disagrees with its changelog is rebuilt from it.")
    mappings_dir: Path = setting(
        "VTSTREAM_MAPPINGS_DIR", MAPPINGS_DIR, Path, "Folder of mapping files (v2/, v3/).")
    log_level: str = setting(
        "VTSTREAM_LOG_LEVEL", "INFO", v.log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_format: str = setting(
        "VTSTREAM_LOG_FORMAT", "text", v.log_format,
        "text, or json: one JSON object per log line with the stage and the indicator key.")
    kafka: KafkaSettings = _group(KafkaSettings, "Kafka and its security")
    vt: VtSettings = _group(VtSettings, "VirusTotal")
    policy: PolicySettings = _group(PolicySettings, "Policy: what may leave for VirusTotal")
    privacy: UrlPrivacy = _group(UrlPrivacy, "URL privacy")
    cache: CacheSettings = _group(CacheSettings, "Cache")
    retry: RetrySettings = _group(RetrySettings, "Retry tiers")
    outputs: OutputSettings = _group(OutputSettings, "Outputs")
    replay: ReplaySettings = _group(ReplaySettings, "Replay and the daily retro-hunt")
    web: WebSettings = _group(WebSettings, "Web: the worker's port")
    taxii: TaxiiSettings = _group(TaxiiSettings, "The TAXII server (vtstream taxii)")
    misp_feed: MispFeedSettings = _group(MispFeedSettings, "The MISP feed (vtstream misp-feed)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every ``VTSTREAM_*`` variable; a bad value raises ConfigError naming it.

        ``overrides`` use the flat names of :meth:`of` (``kafka_bootstrap=...``): command-line flags.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, f in _variables():
            raw = env.get(f.metadata["env"])
            if raw is None:
                continue
            try:
                values[name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{f.metadata['env']}={raw!r} is invalid: {exc}") from None
        settings = cls.of(**{**values, **overrides})
        settings.check_kafka_security()
        settings.check_virustotal()
        return settings

    @classmethod
    def of(cls, **flat: Any) -> "Settings":
        """Settings from flat names: a top-level field by its name, a group's as ``<group>_<field>``.

        >>> Settings.of(cache_ttl_s=60, kafka_bootstrap="k:9092").cache.ttl_s
        60
        """
        top: dict[str, Any] = {}
        grouped: dict[str, dict[str, Any]] = {}
        known = dict(_variables())
        for name, value in flat.items():
            if name not in known:
                raise TypeError(f"no setting named {name!r}")
            group, inner = _split(name)
            if group:
                grouped.setdefault(group, {})[inner] = value
            else:
                top[name] = value
        groups = {g.name: g.metadata["kind"]() for g in fields(cls) if g.name not in _TOP}
        return cls(**top, **{name: replace(groups[name], **changes) if (changes := grouped.get(name)) else groups[name]
                             for name in groups})

    def check_kafka_security(self) -> None:
        """Refuse combinations of the Kafka security settings that cannot connect."""
        k = self.kafka
        protocol = k.security_protocol
        if k.uses_sasl:
            if not k.sasl_username:
                raise ConfigError(f"VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs VTSTREAM_KAFKA_SASL_USERNAME")
            if bool(k.sasl_password) == bool(k.sasl_password_file):
                raise ConfigError(f"VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs exactly one of "
                                  "VTSTREAM_KAFKA_SASL_PASSWORD and VTSTREAM_KAFKA_SASL_PASSWORD_FILE")
        if bool(k.ssl_certfile) != bool(k.ssl_keyfile):
            raise ConfigError("mutual TLS needs both VTSTREAM_KAFKA_SSL_CERTFILE and VTSTREAM_KAFKA_SSL_KEYFILE")
        if not k.uses_tls and (k.ssl_cafile or k.ssl_certfile):
            raise ConfigError(f"VTSTREAM_KAFKA_SSL_* files are set but VTSTREAM_KAFKA_SECURITY_PROTOCOL={protocol} "
                              "does not use TLS: set it to SSL or SASL_SSL")

    def check_virustotal(self) -> None:
        """Refuse sending the API key where it could be read on the way: plain http beyond loopback."""
        vt = self.vt
        key_is_demo = vt.api_key_file is None and vt.api_key == DEMO_API_KEY
        if vt.base_url.startswith("http://") and not v.is_loopback_url(vt.base_url) and not key_is_demo:
            raise ConfigError(f"VTSTREAM_VT_BASE_URL={vt.base_url!r} is plain http to a host that is not loopback: "
                              "the API key would cross the network readable; use https://")
        if vt.api_key_file is not None and vt.api_key != DEMO_API_KEY:
            raise ConfigError("set exactly one of VTSTREAM_VT_API_KEY and VTSTREAM_VT_API_KEY_FILE")

    def described(self) -> Iterator[tuple[str, str]]:
        """(variable, value as shown) of every setting; secrets as ``***`` when set."""
        for name, f in _variables():
            value = _value(self, name)
            yield f.metadata["env"], ("***" if value else "") if f.metadata["secret"] else _shown(value)

    def __repr__(self) -> str:  # never print a secret
        shown = ", ".join(f"{name}={'***' if f.metadata['secret'] else _value(self, name)!r}"
                          for name, f in _variables())
        return f"Settings({shown})"


_TOP = frozenset(f.name for f in fields(Settings) if "env" in f.metadata)


def _variables() -> Iterator[tuple[str, Field[Any]]]:
    """(flat name, field) of every setting, in declaration order: top-level fields, then each group's."""
    for f in fields(Settings):
        if "env" in f.metadata:
            yield f.name, f
        else:
            for inner in fields(f.metadata["kind"]):
                if "env" in inner.metadata:
                    yield f"{f.name}_{inner.name}", inner


def _split(flat: str) -> tuple[str, str]:
    """(group, field) of a flat name; ("", name) for a top-level field. Group names may hold "_"."""
    if flat in _TOP:
        return "", flat
    group = max((g.name for g in fields(Settings) if flat.startswith(f"{g.name}_") and g.name not in _TOP), key=len)
    return group, flat[len(group) + 1:]


def _value(settings: Settings, flat: str) -> Any:
    group, name = _split(flat)
    return getattr(getattr(settings, group), name) if group else getattr(settings, name)


def _shown_default(f: Field[Any]) -> str:
    return "<package>/mappings" if f.default == MAPPINGS_DIR else _shown(f.default)


def _shown(default: Any) -> str:
    """A value as a user writes it in the environment."""
    if isinstance(default, tuple):
        return ",".join("=".join(map(str, d)) if isinstance(d, tuple) else d for d in default)
    if isinstance(default, bool):
        return "true" if default else "false"
    return "(unset)" if default is None else str(default)


def settings_groups() -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(group title, [(variable, default, meaning), ...]) for every group, in declaration order."""
    general: list[tuple[str, str, str]] = []
    out: list[tuple[str, list[tuple[str, str, str]]]] = [("Worker", general)]
    for f in fields(Settings):
        if "env" in f.metadata:
            general.append((f.metadata["env"], _shown_default(f), f.metadata["doc"]))
        else:
            out.append((f.metadata["group"], [(i.metadata["env"], _shown_default(i), i.metadata["doc"])
                                              for i in fields(f.metadata["kind"]) if "env" in i.metadata]))
    return out


def settings_doc() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, in declaration order."""
    return [row for _, rows in settings_groups() for row in rows]


def configuration_markdown() -> str:
    """docs/configuration.md: every setting by group (``vtstream config --markdown`` prints it; a test
    fails when the file is stale)."""
    out = ["# Configuration", "",
           "Every setting is an environment variable, read in one place (`pipeline/settings/`). A bad value",
           "stops the worker at start with a message that names the variable. `vtstream config` shows the",
           "values of the current environment, with secrets as `***`. This page is generated by",
           "`vtstream config --markdown`; the suite fails when it is out of date.", ""]
    for title, rows in settings_groups():
        out += [f"## {title}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        out += [f"| `{env}` | `{default}` | {doc} |" for env, default, doc in rows]
        out.append("")
    return "\n".join(out)
