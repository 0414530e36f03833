"""Data: each challenge's participant kit to download (test images under opaque ids, sample submission,
classes, rules, manifest), with its size, its rules and whether it is open-book. Never a label: the kit is
built from kit_images and the challenge's row only (leaderboard.kit)."""
from __future__ import annotations

import streamlit as st

from db.engine import database_url, session_scope
from leaderboard.challenges import list_challenges
from leaderboard.errors import ChallengeError
from leaderboard.kit import kit_summary, kit_zip_bytes


@st.cache_data(ttl=600, show_spinner=False, max_entries=4)
def _zip(url: str, slug: str, manifest_sha256: str) -> bytes:
    """The archive, built once per kit version (the manifest's hash names it)."""
    with session_scope(url) as session:
        return kit_zip_bytes(session, slug)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def show_challenge(url: str, slug: str, title: str) -> None:
    st.subheader(title or slug)
    try:
        with session_scope(url) as session:
            summary = kit_summary(session, slug)
    except ChallengeError as exc:  # a challenge created before kits existed
        st.info(str(exc))
        return
    rules = summary["rules"]
    st.markdown(f"**{summary['images']} images** in the kit, {_size(summary['image_bytes'])} of image data; "
                f"task **{rules['task']}**, ranked by **{rules['metric']}**, at most {rules['quota']['submissions']} "
                f"scored submissions per team per {rules['quota']['per_rolling_days']:g} days"
                + (f"; **closed** since {rules['closed_at']}" if rules["closed_at"] else "") + ".")
    if rules["open_book"]:
        st.warning(rules["open_book_means"])
        st.markdown("This challenge is **open-book**.")
    else:
        st.caption(rules["open_book_means"])
    st.markdown(f"Training and validation data: {rules['training_data']}")
    st.caption(f"Kit manifest SHA-256: {summary['manifest_sha256']} (check the unpacked kit with "
               f"`sha256sum -c MANIFEST.sha256`)")
    st.download_button(f"Download the kit of {slug} (zip)", data=lambda: _zip(url, slug, summary["manifest_sha256"]),
                       file_name=f"{slug}-kit.zip", mime="application/zip", key=f"kit-{slug}",
                       on_click="ignore")
    st.markdown("sample_submission.csv, first rows:")
    st.code("\n".join(summary["sample_submission"]), language="text")
    with st.expander("Rules (rules.json)"):
        st.json(rules)


def main() -> None:
    st.title("Data")
    st.markdown("Each challenge's **kit**: its test images under opaque ids in a shuffled order, without "
                "metadata, a sample submission, the class list, the rules and a SHA-256 manifest. Predict on the "
                "images, then submit a file shaped like the sample.")
    url = database_url(None)
    with session_scope(url) as session:
        challenges = [(c.slug, c.title) for c in list_challenges(session)]
    if not challenges:
        st.info("No challenge yet.")
    for slug, title in challenges:
        show_challenge(url, slug, title)


main()
