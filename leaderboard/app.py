"""The convbench site: `streamlit run leaderboard/app.py` (database from $CONVBENCH_DB)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not `pages/`: Streamlit would take a folder of that name for a legacy multipage app and list its
# files in the sidebar before this script's navigation has run.
VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="convbench", page_icon=":trophy:", layout="wide")
navigation = st.navigation([
    st.Page(str(VIEWS / "board.py"), title="Leaderboard", icon=":material/leaderboard:", default=True),
    st.Page(str(VIEWS / "architectures.py"), title="Architectures", icon=":material/scatter_plot:"),
    st.Page(str(VIEWS / "detection.py"), title="Detection", icon=":material/center_focus_strong:"),
    st.Page(str(VIEWS / "submit.py"), title="Submit", icon=":material/upload_file:"),
    st.Page(str(VIEWS / "run.py"), title="Run detail", icon=":material/description:"),
    st.Page(str(VIEWS / "campaign.py"), title="Campaign", icon=":material/monitoring:"),
])
navigation.run()
