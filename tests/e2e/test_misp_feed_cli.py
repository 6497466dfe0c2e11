"""`vtstream misp-feed` as an operator starts it: its help, and the settings it refuses before serving."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.devtools.rig import child_env

pytestmark = pytest.mark.e2e

CREDENTIALS = {"VTSTREAM_MISP_FEED_USERNAME": "misp", "VTSTREAM_MISP_FEED_PASSWORD": "s3cret-feed-pw"}


def misp_feed(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = child_env(**env)
    return subprocess.run([sys.executable, "-m", "pipeline", "misp-feed", "--port", "0", *args], env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_help_teaches_the_feed_and_its_settings():
    top = subprocess.run([sys.executable, "-m", "pipeline", "--help"], capture_output=True, text=True, timeout=60)
    assert "misp-feed" in top.stdout
    text = misp_feed("--help").stdout
    assert "Example" in text and "docs/misp.md" in text
    for env in ("VTSTREAM_MISP_FEED_PASSWORD_FILE", "VTSTREAM_MISP_FEED_DAYS", "VTSTREAM_KAFKA_BOOTSTRAP"):
        assert env in text


@pytest.mark.parametrize(("env", "args", "message"), [
    ({}, (), "set VTSTREAM_MISP_FEED_USERNAME and VTSTREAM_MISP_FEED_PASSWORD"),
    (CREDENTIALS, ("--host", "0.0.0.0"), "VTSTREAM_MISP_FEED_INSECURE=true"),
    ({**CREDENTIALS, "VTSTREAM_MISP_FEED_PASSWORD_FILE": __file__}, (), "not both"),
    ({**CREDENTIALS, "VTSTREAM_MISP_FEED_CERT": __file__}, (), "both VTSTREAM_MISP_FEED_CERT and VTSTREAM_MISP_FEED_KEY"),
    ({**CREDENTIALS, "VTSTREAM_MISP_FEED_DAYS": "0"}, (), "VTSTREAM_MISP_FEED_DAYS"),
])
def test_unsafe_or_broken_settings_stop_it_before_it_serves(env, args, message):
    refused = misp_feed(*args, **env)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert "s3cret-feed-pw" not in refused.stderr  # the password is never echoed
