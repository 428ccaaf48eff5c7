"""`sophia simulate`: a fleet over logged, imported or synthetic traffic.

Every number is checked against its range (`sophia.sim.limits.RANGES`) and the run's work is
estimated before any is done. With --optimize, the fleet given (--gpus, or the configured one) is
still the one simulated and reported; the optimizer's answer comes beside it, with the range searched.
"""

from __future__ import annotations

from pathlib import Path

from sophia import config as config_mod
from sophia.cli.common import need_db as _need_db
from sophia.cli.common import opt as _opt
from sophia.cli.common import out as _out
from sophia.cli.common import progress as _progress
from sophia.log.db import Database, default_path

AUTOSCALE_FLAGS = (
    ("autoscale_min", "min_instances"),
    ("autoscale_max", "max_instances"),
    ("target_utilization", "target_utilization"),
    ("scale_up_delay", "scale_up_delay_s"),
    ("cool_down", "cool_down_s"),
)


def _autoscale(args):
    """The autoscaling flags given (None: none); the others keep their defaults. Checked by the request."""
    from sophia.sim.autoscale import Autoscale

    given = {field: getattr(args, flag, None) for flag, field in AUTOSCALE_FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if not given:
        return None
    return Autoscale(**given)


def cmd_simulate(args) -> int:
    from sophia import sim

    cfg = config_mod.load(_opt(args, "config"))
    if getattr(args, "reference", False):
        from sophia.sim import reference

        data = reference.explain(cfg)
        _out(args, data, reference.explain_text(data))
        return 0
    req = sim.SimRequest(
        source=args.source,
        profile=args.profile,
        scale=args.scale,
        gpus=args.gpus,
        gpu_hourly=args.gpu_hourly,
        throughput=args.throughput,
        max_concurrency=args.max_concurrency,
        slo_ms=args.slo_ms,
        policy=args.policy,
        optimize=args.optimize,
        max_gpus=getattr(args, "max_gpus", None),  # the optimizer's range, where the parser offers --max-gpus
        autoscale=_autoscale(args),
    )
    path = _opt(args, "db") or default_path()
    db = None
    if args.profile is None or path == ":memory:" or Path(path).exists():
        db = Database(_need_db(args))
    try:
        data, text = sim.simulate_command(req, cfg, db, on_wait=_progress)
    finally:
        if db is not None:
            db.close()
    _out(args, data, text)
    return 0
