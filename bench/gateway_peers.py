"""The peers bench_server measures in the same run: LiteLLM's proxy and Portkey's gateway, installed
into a folder of their own and started against the same upstream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

try:  # the same event loop the server uses when it is installed
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

from bench.gateway_load import drain, free_port, start, stop, wait_http


def start_litellm(path: str, args, tmp: Path, upstream: str, key: str) -> tuple[subprocess.Popen, int]:
    """LiteLLM's proxy: the same model name, the same upstream; its master key as the bearer token; its
    access log off like Sophia's; the model price map read locally (no network)."""
    lport = free_port()
    lcfg, logcfg = tmp / "litellm.yaml", tmp / "litellm-log.json"
    lcfg.write_text(
        f"model_list:\n  - model_name: {args.model}\n    litellm_params:\n"
        f"      model: openai/m\n      api_base: {upstream}\n      api_key: none\n"
    )
    logcfg.write_text(
        json.dumps(
            {"version": 1, "disable_existing_loggers": False, "loggers": {"uvicorn.access": {"level": "WARNING"}}}
        )
    )
    env = dict(os.environ, LITELLM_MASTER_KEY=key, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    cmd = [path, "--config", str(lcfg), "--port", str(lport), "--num_workers", str(args.workers)]
    lp = subprocess.Popen(
        [*cmd, "--log_config", str(logcfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp,
        env=env,
    )
    drain(lp)
    try:
        wait_http(lport, "/health/liveliness", timeout=120)
    except RuntimeError:
        stop(lp)
        raise
    return lp, lport


def start_portkey(path: str, tmp: Path) -> tuple[subprocess.Popen, int]:
    """Portkey's open-source gateway (one Node process: it has no workers option), headless."""
    pport = free_port()
    cmd = ["node", path] if path.endswith(".js") else [path]
    env = dict(os.environ, NODE_ENV="production")
    pp = start([*cmd, f"--port={pport}", "--headless"], "Ready for connections", env=env, cwd=str(tmp))
    drain(pp)
    return pp, pport


def install_peers(folder: str) -> int:
    """Install LiteLLM's proxy (a venv) and Portkey's gateway (npm) into `folder`; print the options to use."""
    d = Path(folder).resolve()
    d.mkdir(parents=True, exist_ok=True)
    got, missed = [], []
    venv = d / "litellm-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", "litellm[proxy]"], capture_output=True, text=True
        )
        if pip.returncode or not (venv / "bin" / "litellm").exists():
            missed.append(f"litellm[proxy] (pip): {pip.stderr.strip().splitlines()[-1:] or pip.returncode}")
        else:
            got.append(f"--litellm {venv / 'bin' / 'litellm'}")
    except (OSError, subprocess.CalledProcessError) as e:
        missed.append(f"litellm[proxy] (venv): {e}")
    entry = d / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    try:
        npm = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(d / "portkey"), "@portkey-ai/gateway"],
            capture_output=True,
            text=True,
        )
        if npm.returncode or not entry.exists():
            missed.append(f"@portkey-ai/gateway (npm): {npm.stderr.strip().splitlines()[-1:] or npm.returncode}")
        else:
            got.append(f"--portkey {entry}")
    except OSError as e:
        missed.append(f"@portkey-ai/gateway (npm): {e}")
    for m in missed:
        print(f"could not install {m}")
    if got:
        print("installed; measure them with:\n  python bench/bench_server.py " + " ".join(got))
    return 1 if missed else 0
