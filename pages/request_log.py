"""Request log: filter the log, page through it in DuckDB, open one record, export as CSV."""

from __future__ import annotations

import io
import math

import streamlit as st

from pages import common
from sophia.log import analytics, export
from sophia.log.analytics import FACETS, FilterError, Filters
from sophia.ui import appstate, cards

common.require_shell()
rt = common.runtime()
cfg = rt.cfg
common.page_header(
    "Request log",
    "Every routed request, newest first: filter, open one to see its whole record, export the selection as CSV.",
)

version = common.logged_version("log")

# Cost, latency and tokens right after the time, then the id: all in view on a laptop screen
# (and time, cost and latency on a phone's); the rest follows in the order a person narrows a
# request down.
COLUMN_ORDER = (
    "ts",
    "cost_usd",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "request_id",
    "status",
    "tier",
    "model",
    "endpoint",
    "reason",
    "source",
    "ttft_ms",
    "complexity",
    "usage_estimated",
    "simulated",
    "error",
)
COLUMNS = {
    "ts": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm:ss", width=150),
    # Ids are 32 characters: wide enough to read and copy them whole.
    "request_id": st.column_config.TextColumn("request id", width=255),
    "cost_usd": st.column_config.NumberColumn(
        "cost", format="$%.6f", width=95, help="Metered, or the dedicated request's GPU-time share"
    ),
    # "localized": thousands separated (16,039) like every other figure of the app; units in the label.
    "latency_ms": st.column_config.NumberColumn("latency ms", format="localized", width=85),
    "prompt_tokens": st.column_config.NumberColumn("in tok", format="localized", width=65, help="Prompt tokens"),
    "completion_tokens": st.column_config.NumberColumn(
        "out tok", format="localized", width=65, help="Completion tokens"
    ),
    "status": st.column_config.TextColumn("status", width=75),
    "complexity": st.column_config.NumberColumn("complexity", format="%.2f"),
    "usage_estimated": st.column_config.CheckboxColumn("est.", help="Token usage estimated, not reported"),
    "ttft_ms": st.column_config.NumberColumn("first token ms", format="localized"),
    "simulated": st.column_config.CheckboxColumn("sim."),
}


def record_panel(picked_id: str = "") -> None:
    """Open one request by id: offered whatever the filters match (a pasted id needs no table)."""
    rid = st.text_input(
        "Open a request by id",
        value=picked_id,
        key=f"log_rid_{picked_id}",
        placeholder="paste a request id",
        icon=":material/key:",
        help="The whole record of one request, whether or not the filters above select it.",
    ).strip()
    if not rid:
        return
    rec = common.cached("record", version, rid)
    if rec is None:
        st.warning(f"No request with id `{rid}` in the log.", icon=":material/search_off:")
        return
    with st.container(border=True, key="log_record"):
        st.markdown(f"#### Request `{rec['request_id']}`")
        st.caption(
            f"{rec['ts']:%Y-%m-%d %H:%M:%S} UTC · source {rec['source']} · "
            f"policy version {rec['policy_version'] if rec['policy_version'] is not None else '—'}"
        )
        for col, title, text in zip(
            st.columns(3), ("Decision inputs", "Decision", "Outcome"), cards.record_sections(rec), strict=True
        ):
            col.markdown(f"**{title}**")
            col.markdown(text)
        if rec["error"]:
            st.error(rec["error"], icon=":material/error:")
        if rec["prompt_text"] is not None or rec["response_text"] is not None:
            p, r = st.columns(2)
            p.markdown("**Prompt**")
            p.text(rec["prompt_text"] or "")
            r.markdown("**Reply**")
            r.text(rec["response_text"] or "")
        else:
            st.caption(
                "Prompt and reply text are not stored for this request "
                f"(privacy.store_prompts = '{cfg.store_prompts}')."
            )


facets = common.cached("facets", version)

# --- filters -----------------------------------------------------------------------------

with st.container(border=True):
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    with c1:
        start, end = common.time_range("log")
    with c2:
        text = st.text_input(
            "Search",
            key="log_text",
            max_chars=analytics.MAX_TEXT,
            placeholder="request id, error text, or prompt/reply text where stored",
            icon=":material/search:",
            help="Prompt and reply text is only searchable when privacy.store_prompts "
            f"allows storing it (now: '{cfg.store_prompts}').",
        )
    cols = st.columns(len(FACETS))
    chosen = {}
    for col, (name, label) in zip(cols, FACETS.items(), strict=True):
        options = analytics.distinct(facets[name])
        chosen[name] = col.multiselect(label, options, key=f"log_{name}", placeholder="All")

try:
    f = Filters(start=start, end=end, text=text or "", **{k: tuple(v) for k, v in chosen.items()}).validate()
except FilterError as e:
    st.error(str(e), icon=":material/filter_alt_off:")
    record_panel()
    st.stop()

# The pager's key follows the selection: a new selection starts again at page 1.
page_key = "log_page_" + common.filters_key(
    (st.session_state.get("log_range"), st.session_state.get("log_dates"), f.text, chosen)
)
total = common.cached("count", version, f)

# --- the table ---------------------------------------------------------------------------

head = st.columns([3, 1, 1.3], vertical_alignment="bottom")
matches = f"**{total:,}** request matches" if total == 1 else f"**{total:,}** requests match"
head[0].markdown(matches + (f" (of {version[0]:,} logged)" if total != version[0] else ""))
size = head[1].selectbox("Rows per page", [25, 50, 100, 200], index=1, key="log_size")


def build_csv(selection: Filters = f) -> bytes:
    buf = io.BytesIO()
    with rt.reader(common.DB_WAIT_S) as cur:
        export.write_csv(cur, selection, buf, secrets=export.secret_values(cfg, common.secrets()), bom=True)
    return buf.getvalue()


with head[2]:
    too_many = total > appstate.EXPORT_MAX_ROWS
    st.download_button(
        f"Export {total:,} row{'' if total == 1 else 's'} as CSV",
        data=build_csv,
        file_name=export.file_name(f),
        mime="text/csv",
        icon=":material/download:",
        key="log_export",
        on_click="ignore",
        disabled=total == 0 or too_many,
        width="stretch",
        help=(
            f"At most {appstate.EXPORT_MAX_ROWS:,} rows per download: narrow the filters."
            if too_many
            else "Every column of the filtered rows except the caller's key id; text that a spreadsheet would run "
            "as a formula is made inert."
        ),
    )

if total == 0:
    st.info(
        "No request matches these filters. Clear some of them or widen the time range.",
        icon=":material/filter_alt_off:",
    )
    record_panel()
    st.stop()

pages = max(1, math.ceil(total / size))
page_key += f"_{size}"
current = min(st.session_state.get(page_key, 1), pages)
rows = common.cached("page", version, f, size, (current - 1) * size)
rows["endpoint"] = [common.simulated_label(e, cfg) for e in rows["endpoint"]]
st.space("small")  # room for the table's toolbar
event = st.dataframe(
    export.inert_frame(rows),
    key="log_table",
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    height=min(38 + 35 * len(rows), 560),
    column_order=COLUMN_ORDER,
    column_config=COLUMNS,
)
st.pagination(pages, key=page_key, max_visible_pages=9)
st.caption(f"Page {current:,} of {pages:,}. Select a row to open its record.")


selected = event.selection.rows if event is not None and hasattr(event, "selection") else []
record_panel(rows.iloc[selected[0]]["request_id"] if selected else "")
