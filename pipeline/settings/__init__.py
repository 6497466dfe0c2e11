"""Settings: one frozen object of grouped value objects, built from ``VTSTREAM_*`` variables."""

from pipeline.settings.core import Settings, settings_doc, settings_groups
from pipeline.settings.groups import (DEFAULT_SECRET_PARAMS, DEMO_API_KEY, CacheSettings, KafkaSettings,
                                      OutputSettings, PolicySettings, ReplaySettings, RetrySettings, UrlPrivacy,
                                      VtSettings, WebSettings)
from pipeline.settings.values import parse_duration

__all__ = ["Settings", "settings_doc", "settings_groups", "DEFAULT_SECRET_PARAMS", "DEMO_API_KEY", "CacheSettings",
           "KafkaSettings", "OutputSettings", "PolicySettings", "ReplaySettings", "RetrySettings", "UrlPrivacy", "VtSettings",
           "WebSettings", "parse_duration"]
