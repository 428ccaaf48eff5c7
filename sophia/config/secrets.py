"""Secrets: endpoint keys from the environment or `.streamlit/secrets.toml`, never from the file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from sophia.config.checks import ConfigError
from sophia.config.settings import Endpoint

SECRETS_FILE = Path(".streamlit") / "secrets.toml"


def load_secrets(path: str | os.PathLike = SECRETS_FILE) -> dict:
    """Keys from Streamlit's secrets file, for every process (app, CLI, API server); {} without one."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8")) if p.exists() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{p} cannot be read ({type(e).__name__}): fix it or move it aside") from None
    return {k: v for k, v in data.items() if isinstance(v, str)}


def api_key(endpoint: Endpoint, secrets: dict | None = None) -> str | None:
    """The endpoint's key from the environment, else from Streamlit's secrets dict."""
    if not endpoint.api_key_env:
        return None
    value = os.environ.get(endpoint.api_key_env)
    if not value and secrets:
        value = secrets.get(endpoint.api_key_env)
    return value or None
