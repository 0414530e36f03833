"""The improved Fisher vector (Perronnin, Sánchez & Mensink 2010; Sánchez et al. 2013), numpy only.

An image's local descriptors x_t (t = 1..T, PCA-reduced) are described by how they would move a diagonal
GMM (weights w_k, means mu_k, variances sigma_k^2) fitted on the training set's descriptors: the
gradient of their average log-likelihood with respect to the means and the variances, whitened by the
Fisher information's diagonal approximation (Sánchez et al. 2013, eq. 17-18; the weights' gradient adds
little and is left out, as there):

    G_mu_k    = 1 / (T sqrt(w_k))   * sum_t gamma_t(k) (x_t - mu_k) / sigma_k
    G_sigma_k = 1 / (T sqrt(2 w_k)) * sum_t gamma_t(k) [(x_t - mu_k)^2 / sigma_k^2 - 1]

with gamma_t(k) the posterior of component k for x_t: 2 K D numbers per image. "Improved" is the two
normalisations of Perronnin et al. 2010: the signed square root sign(z) |z|^0.5 (power normalisation,
which undoes the burstiness of repeated patterns) and the L2 norm. The spatial pyramid computes one vector
per region of the image from the descriptors whose centres fall in it and concatenates them.

scikit-learn's GaussianMixture(covariance_type="diag") holds the GMM; this module reads its arrays only,
so it is numpy and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Grid = tuple[int, int]  # a pyramid level: columns x rows


@dataclass(frozen=True)
class Gmm:
    """A diagonal GMM: weights (K), means (K x D), variances (K x D)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @classmethod
    def from_sklearn(cls, mixture) -> Gmm:  # sklearn.mixture.GaussianMixture(covariance_type="diag"), fitted
        if mixture.covariance_type != "diag":
            raise ValueError(f"the Fisher vector needs a diagonal GMM, got covariance_type={mixture.covariance_type!r}")
        return cls(np.asarray(mixture.weights_, np.float64), np.asarray(mixture.means_, np.float64),
                   np.asarray(mixture.covariances_, np.float64))

    @property
    def dim(self) -> int:
        """Length of one (unpyramided) Fisher vector: 2 K D."""
        return 2 * self.means.size

    def posteriors(self, x: np.ndarray) -> np.ndarray:
        """gamma (T x K): each descriptor's posterior over the components, computed in the log domain."""
        precision = 1.0 / self.variances
        # log N(x | mu_k, diag sigma_k^2), expanded so that it is three matrix products, not a T x K x D array
        log_det = np.sum(np.log(self.variances), axis=1)
        quad = (x * x) @ precision.T - 2.0 * x @ (self.means * precision).T + np.sum(self.means ** 2 * precision, axis=1)
        log_p = np.log(self.weights) - 0.5 * (x.shape[1] * np.log(2 * np.pi) + log_det + quad)
        log_p -= log_p.max(axis=1, keepdims=True)
        p = np.exp(log_p)
        return p / p.sum(axis=1, keepdims=True)


def fisher_vector(x: np.ndarray, gmm: Gmm, normalise: bool = True) -> np.ndarray:
    """The (improved, if `normalise`) Fisher vector of descriptors x (T x D): [G_mu (K*D), G_sigma (K*D)].

    No descriptor (an empty pyramid region) gives the zero vector."""
    k, d = gmm.means.shape
    if len(x) == 0:
        return np.zeros(2 * k * d)
    x = np.asarray(x, np.float64)
    gamma = gmm.posteriors(x)  # T x K
    sigma = np.sqrt(gmm.variances)
    t = len(x)
    s0 = gamma.sum(axis=0)[:, None]  # K x 1: the zeroth, first and second order statistics
    s1 = gamma.T @ x  # K x D
    s2 = gamma.T @ (x * x)
    # sum_t gamma (x - mu) / sigma and sum_t gamma [(x - mu)^2 / sigma^2 - 1], from the statistics
    g_mu = (s1 - s0 * gmm.means) / sigma
    g_sigma = (s2 - 2 * gmm.means * s1 + s0 * gmm.means ** 2) / gmm.variances - s0
    w = gmm.weights[:, None]
    fv = np.concatenate([(g_mu / (t * np.sqrt(w))).ravel(), (g_sigma / (t * np.sqrt(2 * w))).ravel()])
    return improve(fv) if normalise else fv


def improve(fv: np.ndarray) -> np.ndarray:
    """Power normalisation sign(z)|z|^0.5, then L2 normalisation (a zero vector stays zero)."""
    fv = np.sign(fv) * np.sqrt(np.abs(fv))
    norm = np.linalg.norm(fv)
    return fv / norm if norm > 0 else fv


def regions(points: np.ndarray, size: tuple[int, int], pyramid: tuple[Grid, ...]) -> list[np.ndarray]:
    """For each cell of each pyramid level (in level order, then row-major), a mask of the points
    (N x 2, x and y in pixels) inside it. A point on a border belongs to the cell to its right/below."""
    width, height = size
    masks = []
    for cols, rows in pyramid:
        col = np.minimum((points[:, 0] * cols / width).astype(int), cols - 1)
        row = np.minimum((points[:, 1] * rows / height).astype(int), rows - 1)
        masks += [(col == c) & (row == r) for r in range(rows) for c in range(cols)]
    return masks


def region_count(pyramid: tuple[Grid, ...]) -> int:
    return sum(cols * rows for cols, rows in pyramid)


def pyramid_fisher_vector(x: np.ndarray, points: np.ndarray, size: tuple[int, int], gmm: Gmm,
                          pyramid: tuple[Grid, ...]) -> np.ndarray:
    """One image's spatial-pyramid Fisher vector: each region's improved FV, concatenated and scaled by
    1/sqrt(regions) so the whole has unit norm (each region weighs the same, as in Perronnin et al. 2010)."""
    parts = [fisher_vector(x[mask], gmm) for mask in regions(points, size, pyramid)]
    return np.concatenate(parts) / np.sqrt(len(parts))
