"""The SIFT + Fisher vector + linear SVM recipe: typed, with defaults chosen for this benchmark's small images.

Importing it imports no torch, OpenCV or scikit-learn: the orchestrator resolves and checks it while planning.
A suite changes it per architecture or family, e.g. `[overrides.sift_fv_svm] components = 32`; the suite's
global [recipe] (epochs, lr, batch size: a network's training) does not apply to it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workers.typed import ConfigError, from_dict


@dataclass(frozen=True)
class FisherRecipe:
    # Dense SIFT. ILSVRC 2011's pipelines sampled 24-32 px patches every 4 px on ~300 px images (Sánchez et al.
    # 2013), i.e. patches of about a tenth of the image. OpenCV's SIFT descriptor covers 4 x 4 cells of
    # 1.5 x `size` px each, so at this benchmark's 32 px images (digits: 8 x 8 scans upsampled; synthetic: 32 px)
    # the sizes 2, 3 and 4 are patches of 12, 18 and 24 px, every `step` px: a few hundred descriptors an image.
    # Both are in pixels of a `reference_size` image; at another input size they scale with it (ImageNet at 224 px:
    # sizes 14-28, every 14 px), so the grid holds the same few hundred descriptors at any resolution.
    sift_sizes: tuple[float, ...] = (2.0, 3.0, 4.0)
    step: int = 2
    reference_size: int = 32
    # PCA of the 128-d SIFT (Sánchez et al. 2013: 64) and the diagonal GMM's components (they: 256 at
    # ImageNet scale; a few dozen fill a small training set's descriptor space).
    pca_dim: int = 64
    components: int = 16
    fit_descriptors: int = 50_000  # training descriptors sampled to fit PCA and the GMM
    # Spatial pyramid, levels as (columns, rows): 1x1 + 2x2 (Perronnin et al. 2010 used 1x1 + 2x2 + 1x3).
    pyramid: tuple[tuple[int, ...], ...] = ((1, 1), (2, 2))
    svm_c: float = 1.0  # LinearSVC's C for the unit-norm Fisher vectors, one-vs-rest

    def validate(self, where: str) -> None:
        if not self.sift_sizes or any(s <= 0 for s in self.sift_sizes):
            raise ConfigError(f"{where}.sift_sizes: expected positive keypoint sizes, got {list(self.sift_sizes)}")
        for name in ("step", "reference_size", "pca_dim", "components", "fit_descriptors"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}.{name}: must be at least 1, got {getattr(self, name)}")
        if self.pca_dim > 128:
            raise ConfigError(f"{where}.pca_dim: SIFT has 128 dimensions, got {self.pca_dim}")
        if not self.pyramid or any(len(level) != 2 or min(level) < 1 for level in self.pyramid):
            raise ConfigError(f"{where}.pyramid: expected levels [columns, rows] of at least 1, "
                              f"got {[list(level) for level in self.pyramid]}")
        if self.svm_c <= 0:
            raise ConfigError(f"{where}.svm_c: must be positive, got {self.svm_c}")


def parse_recipe(changes: dict[str, Any], where: str = "recipe") -> FisherRecipe:
    """The recipe with `changes` applied; an unknown field or a bad value raises ConfigError naming it."""
    return from_dict(FisherRecipe, changes, where)  # from_dict calls validate


def resolve_recipe(changes: dict[str, Any], where: str = "recipe") -> dict[str, Any]:
    """Every field, as a job's recipe holds it (part of the job's identity)."""
    return {k: list(map(list, v)) if k == "pyramid" else (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(parse_recipe(changes, where)).items()}
