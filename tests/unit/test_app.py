"""The faust app: faust's own web views stay off whatever faust's APP_* variables say."""

from __future__ import annotations

import pytest

from pipeline.app import create_app
from pipeline.settings import Settings

pytestmark = pytest.mark.unit


def test_faust_views_are_off_even_when_its_environment_asks_for_them(monkeypatch, tmp_path):
    for name in ("APP_WEB_TABLES_ENABLED", "APP_WEB_ROUTER_ENABLED", "APP_WEB_STATS_ENABLED", "APP_WEB_GRAPH_ENABLED",
                 "APP_WEB_METRICS_ENABLED"):
        monkeypatch.setenv(name, "true")
    app, _ = create_app(Settings.of(web_port=6066, store="memory://", data_dir=tmp_path))
    conf = app.conf
    assert not (conf.web_tables_enabled or conf.web_router_enabled or conf.web_stats_enabled
                or conf.web_graph_enabled or conf.web_metrics_enabled)
    served = [blueprint for _, blueprint in app.web.blueprints._enabled]
    assert served == ["faust.web.apps.production_index:blueprint"]  # "/" says {"status": "OK"}, nothing more
