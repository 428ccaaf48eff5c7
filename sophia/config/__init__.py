"""The configuration: `sophia.toml` read into typed settings, checked once at load.

    from sophia import config
    cfg = config.load()          # or config.parse(toml_dict)

Submodules: `settings` (the types), `checks` (the one set of checks), `load` (the file),
`server`, `budgets` and `apikeys` (their tables), `secrets` (keys), `policy_settings` (what a
policy version stores), `privacy` (what of a prompt is stored), `diagnostics` (logging).
"""

from sophia.config.budgets import AlertSettings, Budget
from sophia.config.checks import ConfigError
from sophia.config.load import default_path, load, parse
from sophia.config.secrets import api_key, load_secrets
from sophia.config.server import ServerSettings
from sophia.config.settings import (
    CacheSettings,
    Config,
    Endpoint,
    FailoverSettings,
    KeywordGroup,
    ModelPrice,
    RoutingSettings,
    ScorerSettings,
    Simulation,
)

__all__ = [
    "AlertSettings",
    "Budget",
    "CacheSettings",
    "Config",
    "ConfigError",
    "Endpoint",
    "FailoverSettings",
    "KeywordGroup",
    "ModelPrice",
    "RoutingSettings",
    "ScorerSettings",
    "ServerSettings",
    "Simulation",
    "api_key",
    "default_path",
    "load",
    "load_secrets",
    "parse",
]
