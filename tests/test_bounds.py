"""Every number a user can give has a range, checked before any work with a one-line error that
names the setting and what is allowed: the configuration file, walked setting by setting."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from sophia import config
from sophia.config.budgets import MAX_AMOUNT_USD
from sophia.config.server import ServerSettings
from sophia.config.settings import (
    CacheSettings,
    Endpoint,
    FailoverSettings,
    ModelPrice,
    RoutingSettings,
    ScorerSettings,
    Simulation,
)
from tests.helpers import reference

BAD = (math.nan, math.inf, -math.inf, -1, 1e30, "7", True)


def _ruled(cls) -> list[str]:
    return [f.name for f in fields(cls) if f.metadata.get("rule") and f.metadata["rule"].kind in ("number", "whole")]


# (where in the file, the setting): every number of the reference file and every ruled field.
PLACES = (
    [(("scorer",), k) for k in _ruled(ScorerSettings)]
    + [(("routing",), k) for k in _ruled(RoutingSettings)]
    + [(("failover",), k) for k in _ruled(FailoverSettings)]
    + [(("cache",), k) for k in _ruled(CacheSettings)]
    + [(("server",), k) for k in _ruled(ServerSettings)]
    + [(("endpoints", 1), k) for k in _ruled(Endpoint) + ["hourly_usd", "throughput_tps"]]
    + [(("endpoints", 0, "simulation"), k) for k in _ruled(Simulation)]
    + [(("models", 0), k) for k in _ruled(ModelPrice) + ["input_per_mtok", "output_per_mtok"]]
    + [(("budgets", 0), "amount_usd"), (("budgets", 0), "soft_limit"), (("log",), "flush_interval_s")]
    + [(("alerts",), "forecast_window_hours"), (("scorer", "keywords", 0), "weight")]
)


def _table(data: dict, path: tuple) -> dict:
    t = data
    for step in path:
        t = t.setdefault(step, {}) if isinstance(step, str) else t[step]
    return t


@pytest.mark.parametrize(("path", "key"), PLACES, ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else v)
def test_every_config_number_refuses_nan_inf_wrong_types_and_out_of_range(path, key):
    for value in BAD:
        data = reference()
        _table(data, path)[key] = value
        try:
            cfg = config.parse(data)
        except config.ConfigError as e:
            msg = str(e)
            assert key in msg and "expected" in msg and "\n" not in msg, msg
            continue
        # Accepted: only a finite number within what the setting documents (never nan, inf, text, bools).
        assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value), (key, value)
        assert value >= 0 or key in ("seed",), (key, value)
        assert value < 1e30, (path, key, value, cfg)


def test_budget_amounts_have_an_upper_bound():
    data = reference()
    data["budgets"][0]["amount_usd"] = MAX_AMOUNT_USD * 10
    with pytest.raises(config.ConfigError, match="amount_usd"):
        config.parse(data)
