"""What every command shares: the ``--bootstrap`` option and settings from the environment."""

from __future__ import annotations

from typing import Any

import click

from pipeline.errors import ConfigError
from pipeline.settings import Settings

#: ``--bootstrap``: the Kafka brokers, overriding VTSTREAM_KAFKA_BOOTSTRAP for one command.
bootstrap_option = click.option("--bootstrap", help="Kafka bootstrap servers (overrides VTSTREAM_KAFKA_BOOTSTRAP).")


def cli_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the command line's flags (flat names; None: not given).

    A bad value stops the command with one line naming the variable.
    """
    try:
        return Settings.from_env(**{name: value for name, value in overrides.items() if value is not None})
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
