"""The convbench site: `streamlit run leaderboard/app.py` (database from $CONVBENCH_DB)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "pages"

st.set_page_config(page_title="convbench", page_icon=":trophy:", layout="wide")
navigation = st.navigation([
    st.Page(str(PAGES / "runs.py"), title="Benchmark runs", icon=":material/leaderboard:", default=True),
])
navigation.run()
