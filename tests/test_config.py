"""Configuration: the shipped files load; every bad value is named with what is allowed."""

from __future__ import annotations

import tomllib

import pytest

from sophia import config
from tests.helpers import ROOT, reference


# The one place the shipped files are read: everything else runs on `reference()`, so a
# developer's edited sophia.toml (or data/) never changes what the suite sees.
def test_shipped_files_load():
    cfg = config.load(ROOT / "sophia.toml")
    assert [e.name for e in cfg.tier_endpoints("dedicated")] == [
        "sophia-ai-core",
        "sophia-data-pipeline",
        "sophia-production",
    ]
    assert all(e.simulated for e in cfg.endpoints)
    prices = {m.name: (m.input_per_mtok, m.output_per_mtok) for m in cfg.models}
    assert prices == {
        "llama-4-scout-17b-16e-instruct": (0.08, 0.30),
        "llama-4-maverick-17b-128e-instruct-fp8": (0.18, 0.60),
        "llama3.1-8b-instruct": (0.025, 0.04),
        "text-embedding-3-small": (0.02, 0.0),
    }
    assert cfg.routing.embeddings_model == "text-embedding-3-small"
    example = config.load(ROOT / "sophia.example.toml")
    assert not any(e.simulated for e in example.endpoints)
    assert all(e.base_url and "127.0.0.1" not in (e.api_key_env or "") for e in example.endpoints)


def test_the_tests_reference_is_the_shipped_deployment():
    assert reference() == tomllib.loads((ROOT / "sophia.toml").read_text(encoding="utf-8"))


def bad(mutate):
    data = reference()
    mutate(data)
    with pytest.raises(config.ConfigError) as e:
        config.parse(data)
    return str(e.value)


def test_bad_values_name_key_value_and_allowed():
    msg = bad(lambda d: d["routing"].update(complexity_threshold=1.5))
    assert "routing.complexity_threshold" in msg and "1.5" in msg and "<= 1" in msg
    msg = bad(lambda d: d["privacy"].update(store_prompts="maybe"))
    assert "privacy.store_prompts" in msg and "'maybe'" in msg and "'redacted'" in msg
    msg = bad(lambda d: d["endpoints"][1].update(hourly_usd=0))
    assert "endpoints.sophia-ai-core.hourly_usd" in msg and "never free" in msg
    msg = bad(lambda d: d["endpoints"][0].update(tier="edge"))
    assert "endpoints.serverless.tier" in msg and "'edge'" in msg
    msg = bad(lambda d: d["routing"].update(premium_model="gpt-9"))
    assert "routing.premium_model" in msg and "gpt-9" in msg
    msg = bad(lambda d: d["routing"].update(complexity_treshold=0.5))
    assert "complexity_treshold is not a known setting" in msg
    msg = bad(lambda d: d["failover"].update(max_retries=True))
    assert "failover.max_retries" in msg
    msg = bad(lambda d: d["endpoints"][0].update(api_key="sk-123"))
    assert "api_key_env" in msg and "sk-123" not in msg
    msg = bad(lambda d: d["endpoints"][0].update(kind="openai"))
    assert "base_url is missing" in msg
    msg = bad(lambda d: d["models"].pop(0))
    assert "llama-4-scout-17b-16e-instruct" in msg and "no price" in msg


def test_file_errors(tmp_path):
    with pytest.raises(config.ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")
    p = tmp_path / "broken.toml"
    p.write_text("[routing\n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(p)
    p.write_bytes(b"\xff\xfe[routing]")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load(p)
