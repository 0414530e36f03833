"""About: what the site is, the rules it scores by, its metrics in a sentence each, the lecture's reference
figures (each cited to its paper), and the three ways to take part."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from leaderboard.formatting import percent
from workers.metric_registry import METRICS, PRIMARY

INTRO = """
**convbench** trains the classic convolutional networks (AlexNet, VGG, GoogLeNet, Inception v3, ResNet,
DenseNet) and the R-CNN detector from scratch, and scores them the way the ImageNet Large Scale Visual
Recognition Challenge (ILSVRC) did. Teams can enter their own models against the same held-out test sets.
"""

RULES = """
- **Held labels.** A challenge's test images carry opaque ids; their labels live only on the server, which
  scores each uploaded prediction file at once. No page or export shows a test label.
- **Quota.** Each team gets a few scored submissions per challenge in a rolling window (the board states it,
  2 per 7 days by default), so the test set is not tuned on. A file that fails validation, or one the team
  already submitted, costs nothing.
- **One entry per team.** The board shows each team's best submission; the benchmark's own runs appear as
  the official baselines, one entry per run. Every score has a 95% bootstrap confidence interval, and entries
  whose intervals overlap the leader's are marked *not significantly different*.
- **The Ladder.** A challenge may show the Ladder's scores (Blum and Hardt, 2015): a team's public score changes
  only when a submission beats its shown best by more than a threshold, so a team cannot climb the board by
  probing the public part with small changes to a file.
- **Validation and test.** The Architectures, Detection and Run detail pages show each run's figures on its
  *validation* split, measured during training; the Leaderboard scores the *test* split, which no training
  run saw. The two differ by sampling, and by any tuning done on validation.
"""

# One sentence per metric of the registry that a board or run list shows; the names come from the registry.
DEFINITIONS = {
    "top1_err": "the share of test images whose label is not the model's first guess.",
    "top5_err": "the share of test images whose label is not among the model's five best guesses "
                "(ILSVRC's ranking metric: a photo often shows more than one of the 1,000 classes).",
    "map50": "detection's mean over classes of the average precision, where a box counts as found when it "
             "overlaps a true box of its class by at least 50% intersection over union (PASCAL VOC).",
    "map_coco": "the same average precision averaged again over overlap thresholds 0.50 to 0.95 in steps "
                "of 0.05, which rewards tighter boxes (COCO's primary metric).",
}

# ILSVRC test top-5 error of the lecture's landmarks, each with the paper it comes from.
REFERENCES = [
    ("SIFT + Fisher vectors (XRCE, ILSVRC 2011 winner)", 2011, 0.258,
     ("F. Perronnin, J. Sánchez, T. Mensink, *Improving the Fisher kernel for large-scale image classification*, "
     "ECCV 2010; J. Sánchez, F. Perronnin, *High-dimensional signature compression for large-scale image "
     "classification*, CVPR 2011")),
    ("AlexNet", 2012, 0.153,
     ("A. Krizhevsky, I. Sutskever, G. E. Hinton, *ImageNet classification with deep convolutional neural "
     "networks*, NeurIPS 2012")),
    ("VGG", 2014, 0.073,
     ("K. Simonyan, A. Zisserman, *Very deep convolutional networks for large-scale image recognition*, "
     "ICLR 2015 (arXiv:1409.1556, 2014)")),
    ("GoogLeNet", 2014, 0.067,
     "C. Szegedy et al., *Going deeper with convolutions*, CVPR 2015 (arXiv:1409.4842, 2014)"),
    ("ResNet", 2015, 0.0357,
     ("K. He, X. Zhang, S. Ren, J. Sun, *Deep residual learning for image recognition*, CVPR 2016 "
     "(arXiv:1512.03385, 2015)")),
]

TAKE_PART = """
1. **Read the board.** The *Leaderboard* ranks each challenge's entries on its test split; *Architectures*
   plots accuracy against compute and training time; *Run detail* shows everything that produced a result
   (code version, hardware, recipe, log).
2. **Submit.** Get a challenge's kit (its test images and file format) from the *Data* page, train anything
   you like, and upload a prediction file on the *Submit* page with your team token, or from a shell:
   `convbench submit --server URL --token TOKEN --challenge SLUG predictions.csv`.
3. **Run a suite.** Benchmark the zoo yourself on a Ray cluster; the results land on these pages:
   `ray job submit --address http://HEAD:8265 --working-dir . -- python -m orchestrator run --suite suites/smoke.toml`.
"""


def references_frame() -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "year": str(y), "top-5 error": percent(e), "paper": p, "error": e}
                         for m, y, e, p in REFERENCES])


def reference_chart(frame: pd.DataFrame) -> alt.Chart:
    """Top-5 error by year: the fall from hand-made features to residual networks."""
    short = frame.assign(name=frame["model"].str.replace(r" \(.*\)", "", regex=True))
    base = alt.Chart(short).encode(
        y=alt.Y("name:N", title=None, sort=None),
        x=alt.X("error:Q", title="ILSVRC test top-5 error", axis=alt.Axis(format=".0%")),
        tooltip=["model", "year", "top-5 error"])
    bars = base.mark_bar(color="#4c78a8")
    labels = base.mark_text(align="left", dx=4).encode(text="top-5 error:N")
    return (bars + labels).properties(height=200)


def main() -> None:
    st.title("About convbench")
    st.markdown(INTRO)
    st.subheader("Rules")
    st.markdown(RULES)
    st.subheader("Metrics")
    primary = {PRIMARY[task]: task for task in PRIMARY}
    for name, sentence in DEFINITIONS.items():
        metric = METRICS[name]
        ranked = f" The primary metric of {primary[name]} challenges." if name in primary else ""
        st.markdown(f"- **{metric.display}** ({metric.long_name}): {sentence}{ranked}")
    st.subheader("Reference figures")
    st.caption("ILSVRC classification, top-5 error on the 100,000-image test set, as each paper reported it.")
    frame = references_frame()
    st.altair_chart(reference_chart(frame), width="stretch")
    for model, year, error, paper in REFERENCES:
        st.markdown(f"- {model}, {year}: **{percent(error)}** — {paper}.")
    st.subheader("How to take part")
    st.markdown(TAKE_PART)


main()
