"""What every page shares: the process's runtime, cached reads, filters, empty and busy states.

Not a page itself (app.py lists the pages). Layout only: the figures come from
`sophia.log.analytics` and `sophia.ui` (appstate, metrics, charts).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import runpy
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from sophia import config
from sophia.analysis import effectiveness
from sophia.config import server as server_settings
from sophia.ingest import demo
from sophia.log import analytics
from sophia.log.db import DatabaseBusy
from sophia.log.db import default_path as default_db_path
from sophia.routing.router import make_backends
from sophia.runtime import Runtime
from sophia.ui import appstate
from sophia.ui.metrics import Metric

logger = logging.getLogger(__name__)

APP = Path(__file__).resolve().parents[1] / "app.py"
DB_WAIT_S = 10.0  # how long a page waits for a database another process holds


_shell = threading.local()


@contextmanager
def shell() -> Iterator[None]:
    """Marks a page run that app.py (page config, sidebar, error handling) wraps."""
    _shell.active = True
    try:
        yield
    finally:
        _shell.active = False


def require_shell() -> None:
    """Every page starts here: make sure app.py wraps the page.

    With a `pages/` folder beside app.py, Streamlit starts each process in its older
    folder-based mode, which runs a page file alone, without app.py, until `st.navigation`
    has been called once. Such a run executes app.py now (navigation, sidebar, error
    handling; it runs this same page inside) and ends this bare run.
    """
    if getattr(_shell, "active", False):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


def paths() -> tuple[str, str]:
    """(configuration file, database file) as this process is told to use them."""
    return str(config.default_path()), default_db_path()


def _busy_after(limit: float, progress: Callable[[float], None] | None = None) -> Callable[[float], None]:
    def on_wait(waited: float) -> None:
        if progress is not None:
            progress(waited)
        if waited >= limit:
            raise DatabaseBusy(f"the database is in use by another process (waited {waited:.0f} s)")

    return on_wait


def secrets() -> dict:
    """Streamlit's secrets (.streamlit/secrets.toml) as a dict; empty when there is no file."""
    try:
        return {k: v for k, v in st.secrets.items() if isinstance(v, str)}
    except Exception:  # no secrets file, or an unreadable one: keys then come from the environment
        return {}


@st.cache_resource(show_spinner="Opening the request log…", on_release=lambda rt: rt.close())
def _runtime(config_path: str, db_path: str) -> Runtime:
    cfg = config.load(config_path)
    backends = make_backends(cfg, secrets=secrets())  # API keys: environment, else secrets.toml
    rt = Runtime.open(cfg=cfg, db_path=db_path, backends=backends, wait_s=DB_WAIT_S)
    # Settings and budgets applied by other processes, their spend, endpoint re-admission, alerts.
    rt.start_background()
    return rt


def runtime() -> Runtime:
    """The process's one runtime (router, writer thread, database) for the current settings."""
    rt = _runtime(*paths())
    if not rt.db.memory:
        _record_url(rt.db.path, served_url())
    return rt


def served_url() -> str:
    """The URL this Streamlit server answers on, from its own options (address, port, base path)."""
    host = st.get_option("server.address") or "localhost"
    if host in ("0.0.0.0", "::"):  # every interface: this machine's browser reaches it on localhost
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if st.get_option("server.sslCertFile") else "http"
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"{scheme}://{host}:{st.get_option('server.port')}" + (f"/{base}" if base else "")


@st.cache_resource(show_spinner=False)
def _record_url(db_path: str, url: str) -> bool:
    """Once a process: record where this app serves `db_path`, for `sophia serve`'s /dashboard."""
    try:
        server_settings.record_app_url(db_path, url)
    except (OSError, ValueError) as e:  # /dashboard then falls back to server.app_url's default
        logger.warning("could not record the app's URL beside %s: %s", db_path, e)
        return False
    atexit.register(server_settings.forget_app_url, db_path, url)
    return True


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC, like the log's timestamps


# --- reads ------------------------------------------------------------------------------


def read(fn: Callable, *args):
    """Run `fn(cursor, *args)` on a fresh cursor, showing progress while the file is busy."""
    rt = runtime()
    note = st.empty()

    def progress(waited: float) -> None:
        if waited >= 0.5:
            note.info(
                f"Waiting for the database: another process is using it ({waited:.0f} s)…",
                icon=":material/hourglass_top:",
            )

    try:
        with rt.reader(DB_WAIT_S, _busy_after(DB_WAIT_S, progress)) as cur:
            return fn(cur, *args)
    finally:
        note.empty()


def version() -> tuple[int, str]:
    """The log's data version (records, last timestamp): part of every cached query's key."""
    return read(analytics.data_version)


def logged_version(where: str) -> tuple[int, str]:
    """The data version of a log with records; an empty log shows its empty state and stops the page."""
    v = version()
    if v[0] == 0:
        empty_state(where)
        st.stop()
    return v


@st.cache_data(max_entries=256, show_spinner=False, ttl=3600)
def _cached(name: str, where: tuple[str, str], data_version: tuple[int, str], args: tuple):
    rt = _runtime(*where)
    fn = QUERIES[name]
    with rt.reader(DB_WAIT_S, _busy_after(DB_WAIT_S)) as cur:
        return fn(cur, rt.cfg, *args)


def cached(name: str, data_version: tuple[int, str], *args):
    """A named query of `QUERIES`, cached for this data version and these arguments."""
    return _cached(name, paths(), data_version, args)


QUERIES: dict[str, Callable] = {
    "facets": lambda cur, cfg: analytics.facets(cur),
    "bounds": lambda cur, cfg: analytics.bounds(cur),
    "overview": analytics.overview,
    "timeseries": lambda cur, cfg, f, by, grain: analytics.timeseries(cur, f, by, grain),
    "latency": lambda cur, cfg, f, grain: analytics.latency_series(cur, f, grain),
    "breakdown": lambda cur, cfg, f, by: analytics.breakdown_by(cur, f, by),
    "span": lambda cur, cfg, f: analytics.span(cur, f),
    "count": lambda cur, cfg, f: analytics.count(cur, f),
    "page": lambda cur, cfg, f, limit, offset: analytics.page(cur, f, limit, offset),
    "record": lambda cur, cfg, rid: analytics.record(cur, rid),
    "endpoint_stats": analytics.endpoint_stats,
    "complexity_histogram": lambda cur, cfg, f: effectiveness.complexity_histogram(cur, f, cfg),
    "tiers_side_by_side": lambda cur, cfg, f: effectiveness.tiers_side_by_side(cur, f),
    "failovers_by_cause": lambda cur, cfg, f: effectiveness.failovers_by_cause(cur, f),
    "recovery": lambda cur, cfg, f: effectiveness.recovery(cur, f),
    "throughput": lambda cur, cfg, f, grain: effectiveness.throughput(cur, f, grain),
    "savings_over_time": lambda cur, cfg, f, grain: effectiveness.savings_over_time(cur, cfg, f, grain),
    "endpoint_latency": lambda cur, cfg, since, grain: analytics.endpoint_latency(cur, since, grain),
}


# --- shared widgets ---------------------------------------------------------------------


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def metric_rows(rows: Sequence[Sequence[Metric]], height: str = "content") -> None:
    """Rows of bordered metric cards, one column per card."""
    for row in rows:
        for col, m in zip(st.columns(len(row)), row, strict=True):
            col.metric(
                m.label,
                m.value,
                delta=m.delta,
                delta_color=m.delta_color,
                delta_arrow=m.delta_arrow,
                help=m.help,
                border=True,
                height=height,
            )


def time_range(key: str, default: str = appstate.DEFAULT_RANGE) -> tuple[datetime | None, datetime | None]:
    """A range preset (and dates for a custom one); stops the page with a message if unusable."""
    options = list(appstate.RANGES)
    preset = st.selectbox(
        "Time range",
        options,
        index=options.index(default),
        key=f"{key}_range",
        help="Times are UTC. 'All time' covers the whole log.",
    )
    custom = None
    if preset == "Custom":
        today = now().date()
        custom = st.date_input(
            "Days (UTC)",
            value=(today, today),
            key=f"{key}_dates",
            max_value=today,
            help="The first and the last day, both included.",
        )
        if not isinstance(custom, (tuple, list)):
            custom = (custom,)
    try:
        return appstate.resolve_range(preset, now(), custom)
    except ValueError as e:
        st.error(str(e), icon=":material/event_busy:")
        st.stop()


def empty_state(where: str = "") -> None:
    """A new database: say how to start, and offer demo traffic."""
    with st.container(border=True):
        st.markdown("#### :material/rocket_launch: The request log is empty")
        st.markdown(
            "Every request Sophia routes is recorded here. To get started, **send a message in the "
            'Chat playground**, route traffic with `sophia chat "…"`, or load realistic demo traffic '
            "(`sophia demo` on the command line, or `make run`, which seeds it when the log is empty)."
        )
        c1, c2 = st.columns([1, 1])
        if c1.button(
            f"Load demo traffic ({appstate.DEMO_REQUESTS:,} requests, {appstate.DEMO_DAYS} days)",
            icon=":material/dataset:",
            type="primary",
            key=f"demo_{where}",
        ):
            load_demo()
        c2.page_link("pages/chat.py", label="Open the Chat playground", icon=":material/forum:")


def load_demo(n: int = appstate.DEMO_REQUESTS, days: int = appstate.DEMO_DAYS) -> None:
    rt = runtime()
    with st.status("Loading demo traffic…", expanded=True) as status:
        st.write(f"Generating {n:,} requests over {days} days with the routing policy…")
        table = demo.generate(rt.cfg, n, days, seed=int(time.time()) % 100_000)
        st.write("Writing them to the log in one append…")
        demo.write(rt.db, table, rt.router.policy_version, rt.cfg)
        status.update(label=f"Loaded {n:,} demo requests (source 'demo')", state="complete", expanded=False)
    st.toast(f"Loaded {n:,} demo requests", icon=":material/check_circle:")
    time.sleep(0.3)
    st.rerun()


def busy(e: Exception) -> None:
    """The friendly face of a database another process holds for too long."""
    with st.container(border=True):
        st.warning(
            "**The request log is busy.** Another Sophia process (the CLI, the API server or an import) "
            "is holding the database file right now. Nothing is lost: records wait in a queue and reach "
            f"the log as soon as it is free.\n\n_{e}_",
            icon=":material/hourglass_top:",
        )
        st.button("Try again", icon=":material/refresh:", type="primary", key="busy_retry")


def flash(text: str, icon: str = ":material/check_circle:") -> None:
    """A toast for the next run: one shown right before st.rerun() would be lost."""
    st.session_state["_flash"] = (text, icon)


def show_flash() -> None:
    if (msg := st.session_state.pop("_flash", None)) is not None:
        st.toast(msg[0], icon=msg[1])


def alert_banner() -> None:
    """Budget alerts of the current periods, on every page until their period ends."""
    rt = runtime()
    live = [s for s in rt.guard.snapshot() if s["state"] != "ok"]
    for s in live:
        what = "has reached its limit" if s["state"] == "hard" else f"passed its soft limit ({s['soft_limit']:.0%})"
        st.warning(
            f"**Budget {s['name']}** ({s['scope']}, per {s['period']}) {what}: "
            f"{appstate.usd(s['spent_usd'])} of {appstate.usd(s['amount_usd'])}. "
            f"At the limit: {s['action']}.",
            icon=":material/savings:",
        )


def sidebar_info() -> None:
    """Which configuration and database are in use, and whether backends are simulated."""
    cfg_path, db_path = paths()
    rt = runtime()
    info = appstate.app_info(rt.cfg, db_path)
    with st.sidebar:
        st.markdown("**Configuration**")
        st.caption(f"`{_short(info.config_path)}`")
        st.markdown("**Request log**")
        st.caption(f"`{_short(db_path)}`")
        if info.backends == "simulated":
            st.badge(
                "Simulated backends",
                icon=":material/science:",
                color="orange",
                help="Every endpoint is built in and simulated: no network, no key, no bill. "
                'Point endpoints at real servers in the configuration (kind = "openai").',
            )
        elif info.backends == "mixed":
            st.badge(
                f"{len(info.simulated)} of {info.endpoints} endpoints simulated",
                icon=":material/science:",
                color="orange",
                help="Simulated: " + ", ".join(info.simulated),
            )
        else:
            st.badge("Real backends", icon=":material/cloud_done:", color="green")


def _short(path: str) -> str:
    """A path relative to the working directory when it lies inside it, else as given."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


def simulated_label(name: str | None, cfg) -> str:
    if not name:
        return "—"
    try:
        return f"{name} (simulated)" if cfg.endpoint(name).simulated else name
    except KeyError:
        return name


def filters_key(f: object) -> str:
    """A short stable name for a selection (for widget keys that should reset with it)."""
    return hashlib.sha1(repr(f).encode()).hexdigest()[:12]
