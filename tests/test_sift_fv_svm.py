"""The lecture's classical row (sift_fv_svm): its Fisher vector against the formulas, its spatial pyramid, that it
beats a linear model on raw pixels, that a suite plans it without the training stack, and one run of it through
the orchestrator like any network's."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import runs_in
from sklearn.mixture import GaussianMixture

from workers.classical.fisher import Gmm, fisher_vector, improve, pyramid_fisher_vector, region_count, regions

ROOT = Path(__file__).resolve().parent.parent


def fitted_gmm(k: int = 3, d: int = 4, seed: int = 0) -> tuple[GaussianMixture, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (k, d))
    data = np.concatenate([c + rng.normal(0, 0.5 + i, (200, d)) for i, c in enumerate(centres)])
    return GaussianMixture(k, covariance_type="diag", random_state=seed).fit(data), rng.normal(0, 3, (40, d))


def fisher_by_loops(x: np.ndarray, w: np.ndarray, mu: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Sánchez et al. 2013, eq. 17-18, one descriptor and one component at a time, then sign-sqrt and L2."""
    t, (k, d) = len(x), mu.shape
    gamma = np.zeros((t, k))
    for i in range(t):
        for j in range(k):
            density = 1.0
            for c in range(d):
                density *= np.exp(-(x[i, c] - mu[j, c]) ** 2 / (2 * var[j, c])) / np.sqrt(2 * np.pi * var[j, c])
            gamma[i, j] = w[j] * density
        gamma[i] /= gamma[i].sum()
    g_mu, g_sigma = np.zeros((k, d)), np.zeros((k, d))
    for j in range(k):
        for c in range(d):
            sigma = np.sqrt(var[j, c])
            for i in range(t):
                g_mu[j, c] += gamma[i, j] * (x[i, c] - mu[j, c]) / sigma
                g_sigma[j, c] += gamma[i, j] * ((x[i, c] - mu[j, c]) ** 2 / var[j, c] - 1)
            g_mu[j, c] /= t * np.sqrt(w[j])
            g_sigma[j, c] /= t * np.sqrt(2 * w[j])
    fv = np.concatenate([g_mu.ravel(), g_sigma.ravel()])
    fv = np.array([np.sign(v) * abs(v) ** 0.5 for v in fv])
    return fv / np.sqrt(sum(v * v for v in fv))


def test_the_fisher_vector_is_the_formulas_computed_one_term_at_a_time():
    mixture, x = fitted_gmm()
    gmm = Gmm.from_sklearn(mixture)
    assert np.allclose(gmm.posteriors(x), mixture.predict_proba(x), atol=1e-10)
    expected = fisher_by_loops(x, mixture.weights_, mixture.means_, mixture.covariances_)
    found = fisher_vector(x, gmm)
    assert found.shape == (2 * 3 * 4,) and np.allclose(found, expected, atol=1e-10)
    assert np.isclose(np.linalg.norm(found), 1.0)
    raw = fisher_vector(x, gmm, normalise=False)  # the normalisations are the improvement, and only they
    assert not np.allclose(raw, found) and np.allclose(improve(raw), found)
    assert np.array_equal(fisher_vector(x[:0], gmm), np.zeros(24))  # an empty region
    with pytest.raises(ValueError, match="diagonal GMM"):
        Gmm.from_sklearn(GaussianMixture(2, covariance_type="full").fit(x))


def test_the_spatial_pyramid_concatenates_one_vector_per_region():
    mixture, x = fitted_gmm()
    gmm = Gmm.from_sklearn(mixture)
    # descriptors on a 32 px image, none in the bottom-right quadrant
    points = np.array([[i % 16, (i * 7) % 32] for i in range(len(x))], float)
    points[points[:, 1] >= 16, 0] = 3.0
    pyramid = ((1, 1), (2, 2))
    fv = pyramid_fisher_vector(x, points, (32, 32), gmm, pyramid)
    assert region_count(pyramid) == 5 and fv.shape == (5 * gmm.dim,)
    parts = fv.reshape(5, gmm.dim) * np.sqrt(5)
    assert np.allclose(parts[0], fisher_vector(x, gmm))  # 1x1: every descriptor
    masks = regions(points, (32, 32), pyramid)
    assert [int(m.sum()) for m in masks[1:]] == [int(((points[:, 0] < 16) & (points[:, 1] < 16)).sum()), 0,
                                                 int((points[:, 1] >= 16).sum()), 0]
    assert np.allclose(parts[1], fisher_vector(x[masks[1]], gmm)) and not parts[2].any() and not parts[4].any()
    assert np.isclose(np.linalg.norm(fv), np.sqrt(3 / 5))  # three non-empty regions of norm 1/sqrt(5) each
    assert pyramid_fisher_vector(x, points, (32, 32), gmm, ((1, 1), (3, 1))).shape == (4 * gmm.dim,)


def test_it_beats_a_linear_model_on_raw_pixels_on_the_synthetic_shapes():
    from sklearn.svm import LinearSVC

    from workers.classical.recipe import parse_recipe
    from workers.classical.sift_fv_svm import DenseSift, as_arrays, encode_all, fit_pipeline, top_k_errors
    from workers.datasets import load_dataset

    data = load_dataset("synthetic", {"num_classes": 10, "image_size": 32, "train_per_class": 30,
                                      "val_per_class": 20, "test_per_class": 1, "seed": 1})
    (train, labels), (val, val_labels) = as_arrays(data.train), as_arrays(data.val)
    labels, val_labels = np.asarray(labels), np.asarray(val_labels)
    recipe = parse_recipe({"fit_descriptors": 20_000})
    sift = DenseSift(32, recipe)
    pipeline, train_fv = fit_pipeline(train, labels, 10, 32, recipe, seed=0, sift=sift)
    assert train_fv.shape == (300, pipeline.fv_dim) == (300, 2 * 16 * 64 * 5)
    fv_errors = top_k_errors(pipeline.scores(encode_all(pipeline, sift, val)), val_labels, (1, 5))
    pixels = LinearSVC(C=0.01, max_iter=5000).fit(np.stack([i.ravel() for i in train]) / 255.0, labels)
    pixel_errors = top_k_errors(pixels.decision_function(np.stack([i.ravel() for i in val]) / 255.0), val_labels, (1, 5))
    # Measured at this size on data seeds 1, 2, 3: Fisher vectors 5.0%, 3.0%, 4.5% top-1 error (top-5: 0%); raw pixels
    # 80.5% and 82.0% on seeds 2 and 3 (chance: 90%).
    assert fv_errors[1] < 0.25 and pixel_errors[1] > 0.6, (fv_errors, pixel_errors)
    assert fv_errors[1] + 0.4 < pixel_errors[1] and fv_errors[5] <= pixel_errors[5]


def test_a_suite_plans_it_without_the_training_stack_and_checks_its_recipe():
    plan = """
from orchestrator.suite import parse_suite
raw = {"name": "s", "architectures": ["resnet18", "sift_fv_svm"], "datasets": [{"name": "synthetic"}],
       "recipe": {"epochs": 3}, "overrides": {"sift_fv_svm": {"components": 8}, "classical": {"pyramid": [[1, 1], [3, 1]]}}}
jobs = {job.arch: job for job in parse_suite(raw, "s.toml").jobs()}
assert jobs["sift_fv_svm"].task == "classical" and jobs["resnet18"].task == "classification"
assert jobs["sift_fv_svm"].recipe["components"] == 8 and jobs["sift_fv_svm"].recipe["pyramid"] == [[1, 1], [3, 1]]
assert "epochs" not in jobs["sift_fv_svm"].recipe and jobs["resnet18"].recipe["epochs"] == 3
import sys
assert not {"torch", "torchvision", "cv2", "sklearn"} & {name.split(".")[0] for name in sys.modules}
"""
    out = subprocess.run([sys.executable, "-c", plan], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    from orchestrator.suite import parse_suite
    from workers.typed import ConfigError

    raw = {"name": "s", "architectures": ["sift_fv_svm"], "datasets": [{"name": "synthetic"}],
           "overrides": {"sift_fv_svm": {"pca_dim": 200}}}
    with pytest.raises(ConfigError, match=r"s.toml: overrides.sift_fv_svm.pca_dim: SIFT has 128 dimensions"):
        parse_suite(raw, "s.toml")
    raw["overrides"] = {"sift_fv_svm": {"lr": 0.1}}
    with pytest.raises(ConfigError, match=r"overrides.sift_fv_svm.lr: unknown field"):
        parse_suite(raw, "s.toml")


SUITE = """
name = "classical"
architectures = ["sift_fv_svm"]
datasets = [{ name = "synthetic", num_classes = 6, image_size = 32, train_per_class = 12, val_per_class = 6, test_per_class = 5 }]
[overrides.sift_fv_svm]
components = 8
pca_dim = 32
"""


@pytest.mark.slow
def test_one_run_through_the_orchestrator_writes_a_result_row_and_test_predictions(ray_head, tmp_path):
    suite, url, storage = tmp_path / "classical.toml", f"sqlite:///{tmp_path}/c.db", tmp_path / "runs"
    suite.write_text(SUITE)
    out = subprocess.run([sys.executable, "-m", "orchestrator", "run", "--suite", str(suite), "--db", url,
                          "--storage", str(storage), "--address", ray_head.address], cwd=ROOT, env=ray_head.env,
                         capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (run,) = runs_in(url)
    assert (run.task, run.arch, run.family, run.state, run.launcher) == ("classical", "sift_fv_svm", "classical",
                                                                         "done", "task"), run.error
    assert 0.0 <= run.top5_err <= run.top1_err < 0.5  # six shapes, 72 training images: well below chance (83%)
    fv_dim = 2 * 8 * 32 * 5
    assert run.params == fv_dim * 6 + 6 and run.metrics["fv_dim"] == fv_dim and run.flops > 0
    assert run.wall_s > 0 and run.train_ips > 0 and run.epochs_done == 1 and run.history[0]["val_top1_err"] == run.top1_err
    assert len(run.metrics["confusion"]) == 6 and run.versions["scikit-learn"]
    (folder,) = [p for p in storage.iterdir() if p.name.startswith("sift_fv_svm-synthetic-s0-")]
    with open(folder / "predictions.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_id", *(f"pred_{j}" for j in range(1, 6))] and len(rows) == 1 + 30
    assert all(row[0].startswith("test_") and len(set(row[1:])) == 5 and all(0 <= int(g) < 6 for g in row[1:])
               for row in rows[1:])
    assert (folder / "checkpoints" / "model.npz").is_file()
