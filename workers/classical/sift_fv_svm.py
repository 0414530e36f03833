"""ILSVRC 2011's winning pipeline (Perronnin et al. 2010; Sánchez et al. 2013) as one benchmark architecture.

Dense SIFT (OpenCV) on a grid at a few scales -> PCA (scikit-learn) -> a diagonal GMM -> the improved
Fisher vector with a spatial pyramid (workers.classical.fisher) -> one-vs-rest linear SVMs (LinearSVC);
an image's top-5 are its five highest decision scores. Nothing is learned end to end: PCA and the GMM are
fitted on a sample of the training descriptors, then the SVMs on the training images' Fisher vectors.

`train_sift_fv_svm(spec, ctx)` is what workers.tasks.TASKS["classical"] runs: the same result fields and
test predictions (workers.prediction_format) as workers.train's loop, so the run is scored, stored and shown
as every network's is. Its "checkpoint" is the fitted pipeline as arrays (checkpoints/model.npz); a retried
job reloads it instead of fitting again.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from workers.classical.fisher import Gmm, pyramid_fisher_vector, region_count
from workers.classical.recipe import FisherRecipe, parse_recipe
from workers.prediction_format import MAX_GUESSES, classification_header

SIFT_DIM = 128
TOP_KS = (1, 2, 3, 4, 5)  # workers.metrics.TOP_K, which imports torch
MODEL_FILE = "model.npz"


def dense_keypoints(size: int, recipe: FisherRecipe) -> tuple[list[cv2.KeyPoint], np.ndarray]:
    """A grid of upright keypoints every `step` px at each SIFT size (both scaled from the recipe's reference size
    to `size`), and their centres (N x 2, x and y).

    The grid starts half a step in, so its centres sit symmetrically in the image; OpenCV samples a
    descriptor's window partly outside the image as zero gradient, which the small images need (a 24 px
    window on a 32 px image)."""
    scale = size / recipe.reference_size
    step = max(1, round(recipe.step * scale))
    offset = (size - 1 - (size - 1) // step * step) / 2
    coords = np.arange(offset, size, step, dtype=np.float32)
    keypoints = [cv2.KeyPoint(float(x), float(y), float(s * scale), 0.0)
                 for s in recipe.sift_sizes for y in coords for x in coords]
    return keypoints, np.array([k.pt for k in keypoints], np.float32)


def gray(image: np.ndarray, size: int) -> np.ndarray:
    """A 3 x H x W (or H x W) uint8 image as size x size grey levels, what SIFT reads."""
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)
    if image.shape != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image


class DenseSift:
    """SIFT descriptors of every image on one fixed grid: the same keypoints, so the same centres, for all."""

    def __init__(self, size: int, recipe: FisherRecipe):
        self.size = size
        self.keypoints, self.points = dense_keypoints(size, recipe)
        self.sift = cv2.SIFT_create()  # type: ignore[attr-defined]  # OpenCV 5 exports it; its stubs lag

    def __call__(self, image: np.ndarray) -> np.ndarray:
        found, descriptors = self.sift.compute(gray(image, self.size), self.keypoints)
        if descriptors is None or len(found) != len(self.keypoints):  # OpenCV keeps every given keypoint
            raise RuntimeError(f"SIFT returned {0 if found is None else len(found)} of {len(self.keypoints)} "
                               "descriptors for a dense grid")
        return descriptors.astype(np.float32)


@dataclass
class FisherPipeline:
    """The fitted pipeline: PCA, GMM and the SVMs' weights, as arrays (what model.npz holds)."""

    recipe: FisherRecipe
    size: int
    pca_mean: np.ndarray  # 128
    pca_components: np.ndarray  # pca_dim x 128
    gmm: Gmm
    svm_weights: np.ndarray  # classes x FV dim
    svm_bias: np.ndarray  # classes

    @property
    def fv_dim(self) -> int:
        return self.gmm.dim * region_count(self.pyramid)

    @property
    def pyramid(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(c), int(r)) for c, r in self.recipe.pyramid)

    def encode(self, descriptors: np.ndarray, points: np.ndarray) -> np.ndarray:
        reduced = (descriptors - self.pca_mean) @ self.pca_components.T
        return pyramid_fisher_vector(reduced, points, (self.size, self.size), self.gmm, self.pyramid)

    def scores(self, fisher_vectors: np.ndarray) -> np.ndarray:
        return fisher_vectors @ self.svm_weights.T + self.svm_bias

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, size=self.size, pca_mean=self.pca_mean, pca_components=self.pca_components,
                 weights=self.gmm.weights, means=self.gmm.means, variances=self.gmm.variances,
                 svm_weights=self.svm_weights, svm_bias=self.svm_bias)
        tmp.replace(path)  # atomic: a kill never leaves a torn model

    @classmethod
    def load(cls, path: Path, recipe: FisherRecipe) -> FisherPipeline:
        with np.load(path) as z:
            return cls(recipe, int(z["size"]), z["pca_mean"], z["pca_components"],
                       Gmm(z["weights"], z["means"], z["variances"]), z["svm_weights"], z["svm_bias"])


def fit_pipeline(images: list[np.ndarray], labels: np.ndarray, num_classes: int, size: int, recipe: FisherRecipe,
                 seed: int, sift: DenseSift | None = None) -> tuple[FisherPipeline, np.ndarray]:
    """PCA and GMM on a sample of the training descriptors, then one-vs-rest SVMs on the training Fisher vectors.
    Returns the pipeline and the training images' Fisher vectors."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from sklearn.svm import LinearSVC

    sift = sift or DenseSift(size, recipe)
    # An equal share of the sample from every image, and the images' descriptors not kept: 3,000 images hold
    # 1.2 GB of them, so the encoding pass below computes them again (SIFT is the cheap part).
    rng = np.random.default_rng(seed)
    share = max(1, -(-recipe.fit_descriptors // max(len(images), 1)))
    sample = np.concatenate([d[rng.choice(len(d), min(len(d), share), replace=False)]
                             for d in map(sift, images)])
    pca = PCA(min(recipe.pca_dim, SIFT_DIM), random_state=seed).fit(sample)
    # A small floor on the variances (reg_covar) keeps a component on a flat patch from collapsing.
    mixture = GaussianMixture(recipe.components, covariance_type="diag", reg_covar=1e-4, max_iter=100,
                              random_state=seed).fit(pca.transform(sample))
    pipeline = FisherPipeline(recipe, size, pca.mean_.astype(np.float64), pca.components_.astype(np.float64),
                              Gmm.from_sklearn(mixture), np.zeros((num_classes, 0)), np.zeros(num_classes))
    train_fv = encode_all(pipeline, sift, images)
    svm = LinearSVC(C=recipe.svm_c, dual=True, max_iter=5000, random_state=seed).fit(train_fv, labels)
    weights, bias = svm.coef_, svm.intercept_
    if num_classes == 2:  # LinearSVC keeps one hyperplane for two classes: the first class's score is its negative
        weights, bias = np.concatenate([-weights, weights]), np.concatenate([-bias, bias])
    full_w, full_b = np.zeros((num_classes, train_fv.shape[1])), np.full(num_classes, -np.inf)
    full_w[svm.classes_], full_b[svm.classes_] = weights, bias  # a class absent from train is never guessed
    pipeline.svm_weights, pipeline.svm_bias = full_w, full_b
    return pipeline, train_fv


def encode_all(pipeline: FisherPipeline, sift: DenseSift, images: list[np.ndarray]) -> np.ndarray:
    """The images' Fisher vectors (N x FV dim, float32: half the memory, and the SVM's precision needs no more)."""
    out = np.zeros((len(images), pipeline.fv_dim), np.float32)
    for i, image in enumerate(images):
        out[i] = pipeline.encode(sift(image), sift.points)
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The k best classes of each row, best first (ties: the lower class id, as torch.topk on CPU)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_errors(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    ranked = top_k(scores, max(ks))
    hits = ranked == labels[:, None]
    return {k: float(1.0 - hits[:, :k].any(axis=1).mean()) if len(labels) else float("nan") for k in ks}


def class_counts(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The confusion matrix of the best guess (true x predicted) and each k's per-class hits, as
    workers.metrics.TopKCounter.class_counts gives a network's."""
    ranked = top_k(scores, min(max(TOP_KS), num_classes))
    confusion = np.bincount(labels * num_classes + ranked[:, 0], minlength=num_classes ** 2).reshape(num_classes, -1)
    hits = {k: np.bincount(labels, weights=(ranked[:, :k] == labels[:, None]).any(axis=1), minlength=num_classes)
            .astype(np.int64) for k in TOP_KS}
    return confusion, hits


def estimated_flops(pipeline: FisherPipeline, descriptors_per_image: int) -> float:
    """Multiply-adds x 2 of the encoding and the SVMs for one image: PCA (2 x 128 x D a descriptor), the GMM's
    posteriors and statistics (about 10 K D a descriptor) and the class scores (2 x FV dim x classes).
    The SIFT descriptors themselves (gradients and histograms, a few thousand operations each) are left out."""
    k, d = pipeline.gmm.means.shape
    per_descriptor = 2 * SIFT_DIM * d + 10 * k * d
    return float(descriptors_per_image * per_descriptor + 2 * pipeline.svm_weights.size)


def as_arrays(split: Any) -> tuple[list[np.ndarray], list[Any]]:
    """A split's images as uint8 arrays (C x H x W) and its targets (labels, or test ids)."""
    images, targets = [], []
    for i in range(len(split)):
        image, target = split[i]
        images.append(np.asarray(image.numpy() if hasattr(image, "numpy") else image, dtype=np.uint8))
        targets.append(target)
    return images, targets


def write_predictions(path: Path, ids: list[str], scores: np.ndarray, num_classes: int) -> str:
    """The test split's top-5 guesses in the submission format, as workers.train writes a network's."""
    k = min(MAX_GUESSES, num_classes)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(classification_header(k))
        writer.writerows([image_id, *guesses] for image_id, guesses in zip(ids, top_k(scores, k).tolist()))
    return str(path)


def train_sift_fv_svm(spec: Any, ctx: Any) -> dict[str, Any]:
    """(JobSpec, RunContext) -> the result dict of workers.train.train_classifier, for the classical pipeline."""
    from threadpoolctl import threadpool_limits

    from workers import provenance
    from workers.datasets import load_dataset
    from workers.datasets.kit import prediction_split
    from workers.metrics import TOP_K, class_report, time_to

    if not ctx.is_main:  # one process fits the whole pipeline; the other ranks of a multi-worker job wait it out
        return {}
    wall_start = time.perf_counter()
    recipe = parse_recipe(spec.recipe, "recipe")
    threads = max(1, int(spec.resources.cpus))
    cv2.setNumThreads(threads)
    data = load_dataset(spec.dataset, spec.dataset_options)
    size = spec.input_size
    sift = DenseSift(size, recipe)
    train_images, train_labels = as_arrays(data.train)
    val_images, val_labels = as_arrays(data.val)
    ctx.log(f"sift_fv_svm on {spec.dataset}: {len(train_images)} train, {len(val_images)} val images at {size} px, "
            f"{len(sift.keypoints)} descriptors an image; recipe {spec.recipe}")
    model_path = ctx.storage / "checkpoints" / MODEL_FILE
    with threadpool_limits(threads):
        fit_start = time.perf_counter()
        if model_path.exists():
            pipeline = FisherPipeline.load(model_path, recipe)
            ctx.log(f"resumed from {model_path.name}")
            train_ips = None
        else:
            pipeline, _ = fit_pipeline(train_images, np.asarray(train_labels), data.num_classes, size, recipe,
                                       spec.seed, sift)
            train_ips = len(train_images) / (time.perf_counter() - fit_start)
            pipeline.save(model_path)
        eval_start = time.perf_counter()
        val_scores = pipeline.scores(encode_all(pipeline, sift, val_images))
        eval_ips = len(val_images) / max(time.perf_counter() - eval_start, 1e-9)
        errors = top_k_errors(val_scores, np.asarray(val_labels), TOP_K)
        # issue #14: the challenge's kit images when the job names a kit (workers.datasets.kit), else the test split.
        test_images, test_ids = as_arrays(prediction_split(spec, data, ctx.log))
        test_scores = pipeline.scores(encode_all(pipeline, sift, test_images))
    fit_s = (eval_start - fit_start) if train_ips is not None else 0.0
    record = {"epoch": 1, "images_per_s": train_ips, "val_top1_err": errors[1], "val_top5_err": errors[5],
              "train_s": round(fit_s, 3), "elapsed_s": round(time.perf_counter() - fit_start, 3)}
    ctx.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    ctx.report({**record, "epochs": 1})
    ctx.storage.mkdir(parents=True, exist_ok=True)
    return {
        "top1_err": errors[1], "top5_err": errors[5], "epochs_done": 1, "history": [record],
        "metrics": {**{f"top{k}_err": errors[k] for k in TOP_K}, "val_images": len(val_images),
                    "train_images": len(train_images), "fv_dim": pipeline.fv_dim,
                    "descriptors_per_image": len(sift.keypoints), "confusion_split": "val", "time_to": time_to([record]),
                    **class_report(*class_counts(val_scores, np.asarray(val_labels), data.num_classes),
                                   data.class_names),
                    **({"label_source": data.label_source} if data.label_source else {})},
        "predictions": write_predictions(ctx.storage / "predictions.csv", test_ids, test_scores, data.num_classes),
        # The SVMs' weights and biases: FV dim x classes + classes (PCA and the GMM are unsupervised statistics).
        "params": int(pipeline.svm_weights.size + pipeline.svm_bias.size),
        "flops": estimated_flops(pipeline, len(sift.keypoints)), "input_size": size,
        "train_ips": train_ips, "eval_ips": eval_ips, "wall_s": time.perf_counter() - wall_start,
        "peak_mem_mb": provenance.peak_memory_mb(ctx.device), "hardware": provenance.hardware(ctx.device),
        "node": provenance.node(), "versions": provenance.versions((*provenance.PACKAGES, "scikit-learn")),
        "git_commit": provenance.git_commit(),
        "checkpoint": str(model_path), "log_path": str(ctx.storage / "log.txt"),
    }
