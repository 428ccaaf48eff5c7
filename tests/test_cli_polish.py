"""The `sophia` command line's small things: readable output when there is nothing to show, quiet
exits on a closed pipe, one clear line for a file it cannot write, numeric options checked before
any work, and start-up that imports nothing heavy it does not use."""

from __future__ import annotations

import errno
import importlib
import json
import os
import subprocess
import sys

import pytest

from sophia import cli
from sophia.cli import dispatch, parser
from sophia.cli.route import breakdown_text, latency_text
from tests.helpers import ROOT, reference, run_cli, simulate, write_toml

# --- nothing to show -----------------------------------------------------------------------


def test_route_breakdown_is_readable(capsys):
    assert cli.main(["route", "hi"]) == 0
    text = capsys.readouterr().out
    assert "complexity: 0.00 (no part added anything)" in text and "()" not in text
    assert cli.main(["route", "Please analyze this and remember the context", "--max-tokens", "2000"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("complexity:"))
    assert "keywords:analysis +0.10" in line and "max_tokens +" in line and "+0.00" not in line


def test_breakdown_and_latency_texts():
    assert breakdown_text({}) == breakdown_text({"length": 0.0}) == "no part added anything"
    assert breakdown_text({"a": 0.1, "b": 0.25, "c": 0.0}) == "b +0.25, a +0.10"  # largest first
    assert latency_text(None, None) == "— (no successful request to measure)"
    assert latency_text(349.84, 1234.5) == "p50 349.8 ms, p95 1,234.5 ms"


def test_stats_without_a_successful_request_says_so(tmp_path, capsys):
    cfg = write_toml(tmp_path / "down.toml", simulate(reference(), error_rate=1.0))
    db = str(tmp_path / "down.duckdb")
    assert cli.main(["chat", "hi", "--config", str(cfg), "--db", db]) == 1
    capsys.readouterr()
    assert cli.main(["stats", "--config", str(cfg), "--db", db]) == 0
    text = capsys.readouterr().out
    assert "None" not in text
    assert "latency           — (no successful request to measure)" in text
    assert cli.main(["stats", "--config", str(cfg), "--db", db, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_p50_ms"] is None  # the machine-readable form is null


# --- a closed pipe (`sophia ... | head`) -----------------------------------------------------


def _into_closed_pipe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with standard output a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "sophia.cli", *args],
            cwd=ROOT,
            env=env,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["route", "hi"], ["route", "hi", "--json"], ["route", "hi", "--db", ":memory:"]])
def test_closed_pipe_exits_quietly(args):
    r = _into_closed_pipe(*args)
    assert r.returncode == dispatch.EXIT_BROKEN_PIPE, r.stderr
    assert r.stderr == ""


@pytest.mark.parametrize("args,status", [(["--help"], 0), ([], 2), (["serve", "--help"], 0)])
def test_closed_pipe_after_help_is_quiet(args, status):
    r = _into_closed_pipe(*args)  # argparse drops what it cannot print and keeps its own status
    assert (r.returncode, r.stderr) == (status, "")


def test_closed_pipe_on_a_long_output_exits_quietly(tmp_path):
    db = str(tmp_path / "pipe.duckdb")
    assert run_cli("demo", "--requests", "300", "--days", "1", "--db", db).returncode == 0
    for args in (["export", "requests", "--db", db], ["stats", "--db", db, "--json"]):
        r = _into_closed_pipe(*args)
        assert r.returncode == dispatch.EXIT_BROKEN_PIPE and r.stderr == "", (args, r.stderr)


# --- files it cannot write -----------------------------------------------------------------


def test_os_errors_are_one_clear_line(tmp_path):
    missing = tmp_path / "no-such-folder" / "out.csv"
    text = dispatch.os_error_text(FileNotFoundError(errno.ENOENT, "No such file or directory", str(missing)))
    assert text == f"{missing}: the folder {missing.parent} does not exist (create it or choose another path)"
    assert dispatch.os_error_text(FileNotFoundError(errno.ENOENT, "x", str(tmp_path / "in.csv"))).endswith(
        "no such file"
    )
    folder = dispatch.os_error_text(IsADirectoryError(errno.EISDIR, "x", str(tmp_path)))
    assert folder == f"{tmp_path} is a folder: give a file name"
    assert "permission denied" in dispatch.os_error_text(PermissionError(errno.EACCES, "x", "/root/f"))
    assert dispatch.os_error_text(OSError(errno.EADDRINUSE, "Address already in use")) == "Address already in use"


def test_out_into_a_missing_folder_is_one_line(tmp_path):
    db = str(tmp_path / "x.duckdb")
    assert run_cli("demo", "--requests", "20", "--days", "1", "--db", db).returncode == 0
    out = tmp_path / "no-such-folder" / "rows.csv"
    for what in ("requests", "spend"):
        r = run_cli("export", what, "--db", db, "--out", str(out))
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Errno" not in r.stderr
        assert str(out.parent) in r.stderr and "does not exist" in r.stderr


# --- numeric options -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,needle",
    [
        (["route", "hi", "--max-tokens", "0"], ">= 1 and <= 1,000,000"),
        (["route", "hi", "--max-tokens", "1000001"], ">= 1 and <= 1,000,000"),
        (["route", "hi", "--max-tokens", "inf"], "not a whole number"),
        (["route", "hi", "--max-tokens", "nan"], "not a whole number"),
        (["route", "hi", "--max-tokens", "1.5"], "not a whole number"),
        (["chat", "hi", "--max-tokens", "-3"], ">= 1 and <= 1,000,000"),
        (["budget", "set", "b", "--amount", "1e15"], "<= 1,000,000,000"),
        (
            ["budget", "set", "b", "--amount", "inf"],
            "inf is not allowed: expected an amount in USD > 0 and <= 1,000,000,000",
        ),
        (["budget", "set", "b", "--amount", "nan"], "<= 1,000,000,000"),
        (["budget", "set", "b", "--amount", "0"], "> 0"),
        (["budget", "set", "b", "--amount", "-5"], "> 0"),
        (["budget", "set", "b", "--amount", "ten"], "'ten' is not a number: expected an amount in USD > 0"),
        (["budget", "set", "b", "--amount", "5", "--soft", "0"], "> 0 and <= 1"),
        (["budget", "set", "b", "--amount", "5", "--soft", "1.5"], "> 0 and <= 1"),
        (["budget", "set", "b", "--amount", "5", "--soft", "nan"], "> 0 and <= 1"),
        (["serve", "--port", "70000"], "from 1 to 65,535"),
        (["serve", "--port", "0"], "from 1 to 65,535"),
        (["serve", "--port", "inf"], "not a whole number"),
        (["serve", "--workers", "0", "--port", "70000"], "from 1 to 64"),
        (["serve", "--workers", "65", "--port", "70000"], "from 1 to 64"),
    ],
)
def test_numeric_options_are_checked_before_any_work(tmp_path, capsys, args, needle):
    db = tmp_path / "untouched.duckdb"
    assert cli.main([*args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("sophia: error: argument ")
    assert not db.exists()  # refused before the log was opened


def test_budget_amount_bound_is_the_configurations():
    from sophia.config.budgets import MAX_AMOUNT_USD

    assert parser._amount(str(MAX_AMOUNT_USD)) == MAX_AMOUNT_USD
    assert parser._amount("0.01") == 0.01 and parser._share("1") == 1.0


def test_help_documents_the_ranges():
    r = run_cli("serve", "--help")
    assert "1 to 65,535" in r.stdout and "1 to 64" in r.stdout
    r = run_cli("budget", "set", "--help")
    assert "1,000,000,000" in r.stdout and "> 0 and <= 1" in r.stdout
    assert "1 to 1,000,000" in run_cli("route", "--help").stdout


# --- start-up ------------------------------------------------------------------------------

HEAVY = {"pandas", "numpy", "pyarrow", "duckdb", "httpx", "plotly", "streamlit", "fastapi", "uvicorn"}


def _imported(*args: str) -> set[str]:
    """The top-level packages `python -X importtime -m sophia.cli ARGS` imports."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sophia.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in r.stderr.splitlines() if x.startswith("import time:")]
    assert lines, r.stderr
    return {x.rsplit("|", 1)[-1].strip().split(".")[0] for x in lines}


def test_help_imports_nothing_heavy():
    assert _imported("--help") & HEAVY == set()
    assert _imported("route", "--help") & HEAVY == set()
    assert _imported("budget", "set", "--help") & HEAVY == set()


def test_route_imports_no_analytics_nor_server():
    assert _imported("route", "hi") & {"pandas", "plotly", "streamlit", "fastapi", "uvicorn"} == set()


def test_every_command_resolves():
    for name in dispatch.COMMANDS:
        assert callable(dispatch.command(name)), name


def test_user_errors_name_real_classes():
    for module, name in dispatch._USER_ERRORS:
        assert issubclass(getattr(importlib.import_module(module), name), Exception), (module, name)


def test_constants_read_from_source_are_the_modules():
    for name in ("importers", "demo"):
        lazy = getattr(parser, name)
        real = importlib.import_module(f"sophia.ingest.{name}")
        values = lazy._read()
        assert values, name
        for key, value in values.items():
            assert getattr(real, key) == value, (name, key)
    assert parser.importers.FORMATS == importlib.import_module("sophia.ingest.importers").FORMATS
