"""The convbench site: `streamlit run leaderboard/app.py` (database from $CONVBENCH_DB)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

# Not `pages/`: Streamlit would take a folder of that name for a legacy multipage app and list its
# files in the sidebar before this script's navigation has run.
VIEWS = Path(__file__).resolve().parent / "views"

# (script, title, icon, default): the order of the navigation. A script not (yet) in the tree is left out
# rather than breaking every page.
PAGES = (
    ("board.py", "Leaderboard", ":material/leaderboard:", True),
    ("about.py", "About", ":material/info:", False),
    ("architectures.py", "Architectures", ":material/scatter_plot:", False),
    ("detection.py", "Detection", ":material/center_focus_strong:", False),
    ("compare.py", "Compare", ":material/compare_arrows:", False),
    ("data.py", "Data", ":material/download:", False),
    ("submit.py", "Submit", ":material/upload_file:", False),
    ("run.py", "Run detail", ":material/description:", False),
    ("campaign.py", "Campaign", ":material/timeline:", False),
)

st.set_page_config(page_title="convbench", page_icon=":trophy:", layout="wide")
# At the top, not in a sidebar: the tables get the window's whole width (on a phone the bar folds into a menu).
navigation = st.navigation([st.Page(str(VIEWS / script), title=title, icon=icon, default=default)
                            for script, title, icon, default in PAGES if (VIEWS / script).is_file()], position="top")
navigation.run()
