"""Every table of the file is checked once, at load, by every process (not only by the one that uses it)."""

from __future__ import annotations

import math

import pytest

from sophia import config
from tests.helpers import reference, run_cli, write_toml


def _error(data: dict) -> str:
    with pytest.raises(config.ConfigError) as e:
        config.parse(data)
    return str(e.value)


def test_server_budgets_and_alerts_are_checked_at_load():
    data = reference()
    data["server"] = {"max_concurrency": 0}
    assert _error(data) == "server.max_concurrency = 0 is not allowed: expected a whole number >= 1 and <= 10000"
    data = reference()
    data["budgets"] = [{"name": "b", "scope": "endpoint:nowhere", "amount_usd": 5}]
    assert "budgets.b.scope = 'endpoint:nowhere'" in _error(data)
    data = reference()
    data["alerts"] = {"timezone": "Mars/Olympus"}
    assert "alerts.timezone = 'Mars/Olympus'" in _error(data)


def test_loaded_tables_are_typed():
    data = reference()
    data["server"] = {"max_concurrency": 7, "aliases": ["auto"]}
    cfg = config.parse(data)
    assert cfg.server.max_concurrency == 7 and cfg.server.aliases == ("auto",)
    assert [b.name for b in cfg.budgets] == [b["name"] for b in data.get("budgets", [])]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_by_name(value):
    data = reference()
    data["routing"]["cost_threshold_usd"] = value
    msg = _error(data)
    assert msg.startswith("routing.cost_threshold_usd = ") and "expected a number >= 0" in msg


def test_a_bad_server_table_stops_sophia_route(tmp_path):
    data = reference()
    data["server"] = {"rate_limit_per_minute": -1}
    path = write_toml(tmp_path / "bad.toml", data)
    r = run_cli("route", "hello", "--config", str(path), "--db", str(tmp_path / "x.duckdb"))
    assert r.returncode != 0
    assert "server.rate_limit_per_minute = -1 is not allowed" in r.stderr
    assert "Traceback" not in r.stderr
