"""The `sophia` command line, run as a user runs it."""

from __future__ import annotations

import json

import pytest

from sophia import cli
from tests.helpers import reference, run_cli, simulate, write_toml


def test_route_json_reference_example(capsys):
    assert cli.main(["route", "Hello!", "--max-tokens", "100", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: out[k] for k in ("tier", "model", "reason")} == {
        "tier": "serverless",
        "model": "llama-4-scout-17b-16e-instruct",
        "reason": "cost-optimized",
    }
    assert set(out) >= {"tier", "endpoint", "model", "complexity", "breakdown", "estimated_cost_usd", "reason"}


def test_demo_chat_stats_round_trip(tmp_path, capsys):
    db = str(tmp_path / "cli.duckdb")
    assert cli.main(["demo", "--requests", "300", "--days", "2", "--db", db]) == 0
    assert "wrote 300 demo requests" in capsys.readouterr().out
    assert cli.main(["demo", "--if-empty", "--db", db]) == 0
    assert "already holds 300" in capsys.readouterr().out
    assert cli.main(["chat", "Hello there", "--max-tokens", "20", "--db", db, "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["response"]["choices"][0]["message"]["content"]
    assert reply["routing"]["endpoint"] == "serverless" and reply["routing"]["server"] == "serverless"
    assert reply["routing"]["cost"] > 0 and reply["timestamp"].endswith("Z")
    assert cli.main(["stats", "--db", db, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total_requests"] == 301
    assert s["serverless_requests"] + s["dedicated_requests"] == 301
    assert cli.main(["stats", "--db", db, "--json", "--source", "cli"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total_requests"] == 1 and s["total_cost_usd"] == pytest.approx(reply["routing"]["cost"], abs=1e-6)
    for key in ("serverless_percentage", "average_cost_per_request", "cost_savings_usd"):
        assert key in s


@pytest.mark.parametrize(
    "args,needle",
    [
        (["route"], "required: text"),
        (["chat", "hi", "--max-tokens", "0"], ">= 1"),
        (["chat", "hi", "--tier", "edge"], "invalid choice"),
        (["stats", "--db", "/nonexistent/x.duckdb"], "no database at"),
        (["route", "hi", "--config", "/nonexistent.toml"], "not found"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_no_traceback(args, needle):
    r = run_cli(*args)
    assert r.returncode != 0
    assert needle in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_unreachable_backend_is_an_error_and_recorded(tmp_path, capsys):
    cfg = write_toml(tmp_path / "down.toml", simulate(reference(), error_rate=1.0))
    db = str(tmp_path / "down.duckdb")
    assert cli.main(["chat", "hi", "--config", str(cfg), "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sophia: error: every endpoint failed") and "Traceback" not in err
    assert cli.main(["stats", "--db", db, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["total_requests"] == 1 and s["error_requests"] == 1


def test_export_requests_and_spend(tmp_path, capsys):
    db = str(tmp_path / "x.duckdb")
    assert cli.main(["demo", "--requests", "120", "--days", "2", "--db", db]) == 0
    capsys.readouterr()
    out = tmp_path / "rows.csv"
    assert cli.main(["export", "requests", "--db", db, "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 121 and "api_key_id" not in lines[0] and lines[0].startswith('"request_id"')
    assert cli.main(["export", "spend", "--by", "day", "--group", "tier,model", "--db", db]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == (
        "period_start,tier,model,requests,prompt_tokens,completion_tokens,metered_cost_usd,"
        "fixed_cost_usd,total_cost_usd,all_serverless_primary_usd,all_premium_usd"
    )
    assert sum(int(r.split(",")[3]) for r in text[1:]) == 120
    assert cli.main(["export", "spend", "--group", "colour", "--db", db]) == 1
    assert "--group 'colour' is not allowed" in capsys.readouterr().err
