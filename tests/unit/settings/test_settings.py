import pytest

from pipeline.errors import ConfigError
from pipeline.settings import Settings, settings_doc, settings_groups

pytestmark = pytest.mark.unit


def test_defaults_run_the_demo():
    s = Settings.from_env({})
    assert s.vt.api_version == "v3" and s.vt.rate_per_minute == 4 and s.vt.daily_quota == 500
    assert s.policy.block_labels == ("TLP:RED", "TLP:AMBER+STRICT", "PAP:RED")


def test_values_are_parsed():
    s = Settings.from_env({"VTSTREAM_VT_API_VERSION": "V2", "VTSTREAM_ALLOW_LABELS": "TLP:GREEN, TLP:CLEAR",
                           "VTSTREAM_KAFKA_BOOTSTRAP": "kafka://k1:9092", "VTSTREAM_VT_BASE_URL": "https://x.test/"})
    assert s.vt.api_version == "v2"
    assert s.policy.allow_labels == ("TLP:GREEN", "TLP:CLEAR")
    assert s.kafka.bootstrap == "k1:9092"
    assert s.vt.base_url == "https://x.test"
    verdicts = Settings.from_env({"VTSTREAM_VERDICT_CHANGES": "false", "VTSTREAM_VERDICT_MEMORY": "30d",
                                  "VTSTREAM_RETROHUNT_BUDGET": "20%"})
    assert not verdicts.outputs.verdict_changes and verdicts.outputs.verdict_memory_s == 30 * 86400
    assert verdicts.replay.retrohunt_budget.of(500) == 100 and Settings().replay.retrohunt_budget.of(500) == 75


@pytest.mark.parametrize("env, needle", [
    ({"VTSTREAM_VT_API_VERSION": "v4"}, "VTSTREAM_VT_API_VERSION"),
    ({"VTSTREAM_VT_RATE_PER_MINUTE": "0"}, "positive"),
    ({"VTSTREAM_VT_RATE_PER_MINUTE": "four"}, "VTSTREAM_VT_RATE_PER_MINUTE"),
    ({"VTSTREAM_ADD_CONFIDENCE": "101"}, "between 0 and 100"),
    ({"VTSTREAM_ADD_RATING": "6"}, "between 0 and 5"),
    ({"VTSTREAM_VT_BASE_URL": "https://www.virustotal.com/api/v3"}, "scheme and host only"),
    ({"VTSTREAM_VT_BASE_URL": "www.virustotal.com"}, "http"),
    ({"VTSTREAM_LOG_LEVEL": "LOUD"}, "VTSTREAM_LOG_LEVEL"),
    ({"VTSTREAM_RETROHUNT_BUDGET": "150%"}, "VTSTREAM_RETROHUNT_BUDGET.*at most 100%"),
    ({"VTSTREAM_RETROHUNT_BUDGET": "0"}, "VTSTREAM_RETROHUNT_BUDGET"),
    ({"VTSTREAM_VERDICT_CHANGES": "maybe"}, "VTSTREAM_VERDICT_CHANGES"),
])
def test_bad_values_name_the_variable_and_problem(env, needle):
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_api_key_never_in_repr():
    s = Settings.from_env({"VTSTREAM_VT_API_KEY": "supersecretkey123"})
    assert "supersecretkey123" not in repr(s) and "supersecretkey123" not in str(s)
    assert "supersecretkey123" not in repr(s.vt)


def test_every_setting_is_documented():
    rows = settings_doc()
    assert all(env.startswith("VTSTREAM_") and doc for env, _, doc in rows)
    assert len({env for env, _, _ in rows}) == len(rows)


def test_taxii_password_never_in_repr_and_outputs_are_checked():
    s = Settings.from_env({"VTSTREAM_TAXII_PASSWORD": "taxii-secret-123", "VTSTREAM_OUTPUTS": "events, STIX"})
    assert "taxii-secret-123" not in repr(s) and "taxii-secret-123" not in repr(s.web)
    assert s.outputs.publish == ("events", "stix")
    with pytest.raises(ConfigError, match="VTSTREAM_OUTPUTS"):
        Settings.from_env({"VTSTREAM_OUTPUTS": "events,csv"})


def test_settings_come_in_groups_and_flat_names_reach_them():
    s = Settings.of(cache_ttl_s=60, kafka_bootstrap="k:9092", app_id="x")
    assert (s.cache.ttl_s, s.kafka.bootstrap, s.app_id) == (60, "k:9092", "x")
    assert [title for title, _ in settings_groups()][:3] == ["Worker", "Kafka and its security", "VirusTotal"]
    with pytest.raises(TypeError, match="no setting named 'cache_tll_s'"):
        Settings.of(cache_tll_s=1)


# --- the VirusTotal key: https beyond loopback, from a file, never both ----------------------------

@pytest.mark.parametrize("url", ["http://127.0.0.1:8079", "http://localhost:8079", "http://[::1]:8079",
                                 "http://127.8.8.8", "https://www.virustotal.com", "https://vt.proxy.example:8443"])
def test_base_urls_that_keep_the_key_off_the_network(url):
    assert Settings.from_env({"VTSTREAM_VT_BASE_URL": url, "VTSTREAM_VT_API_KEY": "real"}).vt.base_url == url


@pytest.mark.parametrize("url", ["http://www.virustotal.com", "http://10.0.0.5:8079", "http://localhost.evil.example",
                                 "http://127.0.0.1.nip.io"])
def test_plain_http_beyond_loopback_is_refused_with_a_real_key(url):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="VTSTREAM_VT_BASE_URL.*use https://"):
        Settings.from_env({"VTSTREAM_VT_BASE_URL": url, "VTSTREAM_VT_API_KEY": "real"})
    # the emulator's demo key is no secret: the compose lab's emulator profile may use plain http
    assert Settings.from_env({"VTSTREAM_VT_BASE_URL": url}).vt.base_url == url


def test_the_key_comes_from_exactly_one_of_the_variable_and_the_file(tmp_path):
    from pipeline.errors import ConfigError
    from pipeline.vt.client import api_key

    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    s = Settings.from_env({"VTSTREAM_VT_API_KEY_FILE": str(key_file), "VTSTREAM_VT_BASE_URL": "https://vt.example"})
    assert api_key(s) == "from-a-file" and "from-a-file" not in repr(s)
    with pytest.raises(ConfigError, match="exactly one of VTSTREAM_VT_API_KEY and VTSTREAM_VT_API_KEY_FILE"):
        Settings.from_env({"VTSTREAM_VT_API_KEY_FILE": str(key_file), "VTSTREAM_VT_API_KEY": "x"})
    with pytest.raises(ConfigError, match="VTSTREAM_VT_API_KEY_FILE"):
        Settings.from_env({"VTSTREAM_VT_API_KEY_FILE": str(tmp_path / "missing")})
    assert Settings().vt.max_response_bytes == 32 * 1024 * 1024
