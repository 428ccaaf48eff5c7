"""Sophia's app: page configuration, navigation and the sidebar. No page content lives here."""

from __future__ import annotations

import streamlit as st

from pages import common
from sophia.config import ConfigError
from sophia.config.diagnostics import setup_logging
from sophia.log.db import DatabaseBusy, DatabaseError

st.set_page_config(
    page_title="Sophia · LLM router", page_icon=":material/alt_route:", layout="wide", initial_sidebar_state="auto"
)

pages = {
    "Route": [
        st.Page("pages/chat.py", title="Chat playground", icon=":material/forum:", default=True),
    ],
    "Observe": [
        st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:"),
        st.Page("pages/request_log.py", title="Request log", icon=":material/table_rows:"),
    ],
    "Steer": [
        st.Page("pages/simulator.py", title="Cost simulator", icon=":material/calculate:"),
        st.Page("pages/tuning.py", title="Threshold tuning", icon=":material/tune:"),
        st.Page("pages/budgets.py", title="Budgets", icon=":material/savings:"),
    ],
    "Operate": [
        st.Page("pages/endpoints.py", title="Endpoints", icon=":material/dns:"),
    ],
}
page = st.navigation(pages)

notice = st.container()
try:
    setup_logging()  # idempotent: the script reruns on every interaction
    common.runtime()
    common.sidebar_info()
    common.alert_banner()
    common.show_flash()
    with common.shell():
        page.run()
except ConfigError as e:
    with notice:
        st.error(f"**The configuration cannot be used.** {e}", icon=":material/settings_alert:")
        st.caption("Fix the file (or point SOPHIA_CONFIG at another one) and reload the page.")
except DatabaseBusy as e:
    with notice:
        common.busy(e)
except DatabaseError as e:
    with notice:
        st.error(f"**The request log cannot be opened.** {e}", icon=":material/database:")
        st.caption("Point SOPHIA_DB at another file, or move this one aside, and reload the page.")
