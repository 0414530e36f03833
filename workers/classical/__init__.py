"""The lecture's classical row: ILSVRC 2011's dense SIFT + Fisher vector + linear SVM pipeline.

`recipe` (no torch, OpenCV or scikit-learn: the orchestrator plans with it), `fisher` (the Fisher vector's
math, numpy only) and `sift_fv_svm` (the pipeline and its training entry point, workers.tasks "classical").
"""
