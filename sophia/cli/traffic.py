"""Commands over whole traffic: import a file, replay the log, export it as CSV.

Each exits quietly when its standard output is closed early (`sophia export requests | head`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sophia import config as config_mod
from sophia.analysis import replay
from sophia.budgets import spend
from sophia.cli.common import CLIError, need_db, opt, out, progress
from sophia.ingest import importers
from sophia.log import versions
from sophia.log.db import Database

SHOWN_PROBLEMS = 50  # bad rows listed on the terminal; --json lists them all


# --- import -------------------------------------------------------------------------------


def _exclusions(path: str | None) -> set[str]:
    if not path:
        return set()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CLIError(f"--exclude {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CLIError(f"--exclude {path} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    prompts = set()
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
                prompts.add(obj["eval_prompt"] if isinstance(obj, dict) else str(obj))
            except (ValueError, KeyError):
                raise CLIError(f"--exclude {path}: line {n} is not a JSON object with eval_prompt") from None
    return prompts


def _print_problems(report: importers.ImportReport) -> None:
    for ln, reason in report.problems[:SHOWN_PROBLEMS]:
        print(f"  line {ln}: {reason}", file=sys.stderr)
    if len(report.problems) > SHOWN_PROBLEMS:
        print(f"  … and {len(report.problems) - SHOWN_PROBLEMS:,} more (use --json for all)", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    exclude = _exclusions(args.exclude)
    try:  # before the database is opened: a wrong format is a usage error (exit 2)
        importers.check_format(args.path, args.format)
    except importers.WrongFormat as e:
        raise CLIError(str(e)) from None
    cfg = config_mod.load(opt(args, "config"))
    db = Database(opt(args, "db"))
    mapping = importers.Mapping(
        args.ts_col,
        args.ts_unit,
        args.prompt_tokens_col,
        args.completion_tokens_col,
        args.prompt_col,
        args.model_col,
        args.latency_col,
        args.start,
    )
    tty = sys.stderr.isatty() and not opt(args, "json")

    def bar(frac: float, msg: str) -> None:  # the progress bar is user output, so stderr
        if tty:
            print(f"\r[{'#' * int(frac * 20):<20}] {msg[:70]:<70}", end="" if frac < 1 else "\n", file=sys.stderr)

    try:
        with db.cursor(on_wait=progress) as cur:
            version = versions.ensure(cur, cfg)
        report = importers.import_file(
            db,
            cfg,
            args.path,
            args.format,
            source=args.source,
            mapping=mapping,
            exclude_prompts=exclude,
            policy_version=version,
            progress=bar,
            shift_to=opt(args, "shift_to"),
            charge_fleet=bool(opt(args, "charge_fleet")),
        )
    except importers.WrongFormat as e:  # the file changed since the check above
        raise CLIError(str(e)) from None
    finally:
        db.close()
    if opt(args, "json"):
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.summary())
        _print_problems(report)
    return 0


# --- replay -------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    if args.since and args.until and args.until <= args.since:
        raise CLIError(f"--until {args.until:%Y-%m-%d %H:%M} is not after --since {args.since:%Y-%m-%d %H:%M}")
    base = config_mod.load(opt(args, "config"))
    db = Database(need_db(args))
    try:
        with db.cursor(on_wait=progress) as cur:
            _, cfg = versions.resolve(cur, base)
            traffic = replay.load(cur, args.source, args.since, args.until)
    finally:
        db.close()
    if not traffic.n:
        raise CLIError("no request matches the selection: check --source, --since and --until (see `sophia stats`)")
    changes = {}
    if args.complexity_threshold is not None:
        changes["complexity_threshold"] = args.complexity_threshold
    if args.cost_threshold is not None:
        changes["cost_threshold_usd"] = args.cost_threshold
    cfg = cfg.with_routing(**changes)
    tiers = replay.label_tiers(traffic)
    prepared = replay.prepare(traffic, cfg, tiers)
    if args.sweep:
        _print_sweep(args, traffic, cfg, tiers, prepared)
    else:
        _print_replay(args, replay.replay(traffic, cfg, tiers, prepared).as_dict())
    return 0


def _print_sweep(args: argparse.Namespace, traffic, cfg, tiers, prepared) -> None:
    sw = replay.sweep(traffic, cfg, tiers=tiers, prepared=prepared)
    data = {"sweep": sw.to_dict(orient="records")}
    if tiers and traffic.labelled.any():
        c = replay.curve(traffic, sw, tiers)
        data |= {
            "weak_quality": c.weak,
            "strong_quality": c.strong,
            "apgr": c.apgr,
            "random_apgr": c.random_apgr,
            "oracle_apgr": c.oracle_apgr,
            "policy_gap_reached": c.policy_gap_reached,
            **{
                f"{'' if name == 'policy' else name + '_'}cpt_{x}": v
                for name, by_level in c.cpt.items()
                for x, v in by_level.items()
            },
            "tiers": tiers,
        }
    text = sw[["threshold", "dedicated_share", "metered_cost_usd", "amortized_cost_usd", "quality"]].to_string(
        index=False, float_format=lambda v: f"{v:.4f}"
    )
    if "apgr" in data:
        text += (
            f"\nquality gap recovered (APGR): policy {data['apgr']:.3f}, random {data['random_apgr']:.3f}, "
            f"oracle {data['oracle_apgr']:.3f}"
        )

        def share(v: float | None) -> str:
            return "never" if v is None else f"{v:.1%}"

        text += "\nstrong-tier calls needed (CPT): " + "; ".join(
            f"{x}% of the gap: policy {share(data[f'cpt_{x}'])}, random {share(data[f'random_cpt_{x}'])}, "
            f"oracle {share(data[f'oracle_cpt_{x}'])}"
            for x in replay.CPT_LEVELS
        )
        reached = data["policy_gap_reached"]
        if reached is not None and data[f"cpt_{replay.CPT_LEVELS[0]}"] is None:
            text += (
                f"\nno threshold reaches {replay.CPT_LEVELS[0]}% of the gap: the best recovers {reached:.1%}, "
                f"at most {sw['labelled_share'].max():.1%} of calls ever go to the strong tier; "
                "the scorer does not tell these prompts apart (try a learned router)"
            )
    out(args, data, text)


def _print_replay(args: argparse.Namespace, r: dict) -> None:
    from sophia.money.format import usd

    q = f"{r['quality']:.1%} of {r['labelled_requests']:,} labelled" if r["quality"] is not None else "no labels"
    latency = ", ".join(f"{k} p50 {v['p50']:.0f} ms / p95 {v['p95']:.0f} ms" for k, v in r["latency_ms"].items())
    lines = [
        f"requests     {r['requests']:,}: {r['serverless']:,} serverless, {r['dedicated']:,} dedicated",
        f"cost         metered {usd(r['metered_cost_usd'])}, dedicated share {usd(r['amortized_cost_usd'])}, "
        f"GPU-hours {usd(r['fixed_cost_usd'])} (the configured fleet over the span)",
        f"actual total {usd(r['actual_total_usd'])} · all on primary {usd(r['all_serverless_primary_usd'])} · "
        f"all on premium {usd(r['all_premium_usd'])} · savings {usd(r['cost_savings_usd'])} against all on primary",
        "latency      " + latency,
        f"quality      {q}",
        f"changed      {r['changed_decisions']:,} decisions differ from the log "
        f"({r['runtime_only_decisions']:,} runtime-only decisions not compared)",
    ]
    out(args, r, "\n".join(lines))


# --- export -------------------------------------------------------------------------------


def _out_file(arg: str | None) -> Path | None:
    """The --out file, checked before any work: its folder must exist (it is not created, so
    that a mistyped path does not leave folders behind)."""
    if not arg:
        return None
    path = Path(arg)
    folder = path.parent
    if path.is_dir():
        raise CLIError(f"--out {arg} is a folder: give a file name inside it")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise CLIError(f"--out {arg}: the folder {folder} {what}; create it first (mkdir -p {folder})")
    return path


def _open_out(path: Path, mode: str):
    try:
        return open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except OSError as e:
        raise CLIError(f"--out {path} cannot be written ({e.strerror or e})") from None


def cmd_export(args: argparse.Namespace) -> int:
    if args.export_what == "requests":
        return _export_requests(args)
    if args.export_what != "spend":
        raise CLIError("say what to export: `sophia export spend --by day|week|month` or `sophia export requests`")
    return _export_spend(args)


def _export_spend(args: argparse.Namespace) -> int:
    target = _out_file(args.out)
    cfg = config_mod.load(opt(args, "config"))
    alert_settings = cfg.alerts
    groups = [g.strip() for item in args.group for g in item.split(",") if g.strip()]
    db = Database(need_db(args))
    try:
        with db.cursor(on_wait=progress) as cur:
            df = spend.spend(cur, cfg, args.by, groups, args.source, alert_settings.timezone)
    finally:
        db.close()
    text = spend.to_csv(df)
    if target is not None:
        with _open_out(target, "w") as fh:
            fh.write(text)
        print(f"wrote {len(df):,} rows to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _export_requests(args: argparse.Namespace) -> int:
    """Every selected row, streamed batch by batch (no row limit), cells inert, no secrets."""
    from sophia.log import analytics, export

    target = _out_file(args.out)
    cfg = config_mod.load(opt(args, "config"))
    f = analytics.Filters(start=args.since, end=args.until, source=tuple(args.source)).validate()
    db = Database(need_db(args))
    try:
        secrets = export.secret_values(cfg, config_mod.load_secrets())
        with db.cursor(on_wait=progress) as cur:
            if target is not None:
                rows = analytics.count(cur, f)
                with _open_out(target, "wb") as fh:
                    n = export.write_csv(cur, f, fh, secrets=secrets)
                print(f"wrote {rows:,} requests ({n:,} bytes) to {args.out}", file=sys.stderr)
            else:
                export.write_csv(cur, f, sys.stdout.buffer, secrets=secrets)
    finally:
        db.close()
    return 0
