"""The convbench site: `streamlit run leaderboard/app.py` (database from $CONVBENCH_DB)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from leaderboard.site_data import SITE_SESSION_KEY

PAGES = Path(__file__).resolve().parent / "pages"
# Each page's URL path is its file name (Streamlit's default), so that a page Streamlit's legacy
# pages/-folder mode ran on its own is the same page here (see site_data.ensure_site_navigation).

st.set_page_config(page_title="convbench", page_icon=":trophy:", layout="wide")
navigation = st.navigation([
    st.Page(str(PAGES / "board.py"), title="Leaderboard", icon=":material/leaderboard:", default=True),
    st.Page(str(PAGES / "architectures.py"), title="Architectures", icon=":material/scatter_plot:"),
    st.Page(str(PAGES / "detection.py"), title="Detection", icon=":material/center_focus_strong:"),
    st.Page(str(PAGES / "submit.py"), title="Submit", icon=":material/upload_file:"),
    st.Page(str(PAGES / "run.py"), title="Run detail", icon=":material/description:"),
    st.Page(str(PAGES / "campaign.py"), title="Campaign", icon=":material/monitoring:"),
])
st.session_state[SITE_SESSION_KEY] = True
navigation.run()
