"""R-CNN (Girshick et al., CVPR 2014): warp each proposal, classify it with a CNN, refine its box.

The paper's pipeline. Class scores are the fine-tuned network's own softmax by default, or, as
the paper did, linear SVMs trained on its features after fine-tuning (recipe classifier = "svm",
workers.detection.svm; the paper's appendix measures the softmax a few points of mAP lower on
VOC 2007).

- warp: each proposal, dilated so that p = 16 pixels of context surround it at the 227-pixel
  warp (scaled to the chosen input size), is warped anisotropically to the input size; what
  falls outside the image is the image mean (zero after normalising);
- CNN: any architecture of the model zoo with C + 1 outputs, trained on regions: IoU >= 0.5
  with a ground-truth box makes a region that box's class, anything else background;
- boxes: class-specific ridge regression from the CNN's features (the input of its last linear
  layer) to the paper's targets (dx, dy, log dw, log dh), fitted on proposals with IoU >= 0.6;
- per-class greedy NMS.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, clip_boxes_to_image, roi_align

from workers.zoo import get_arch

PAPER_WARP = 227  # the paper's warped region side, for which its context padding is given
PAPER_PADDING = 16
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

# The paper's parametrisation of a box relative to its proposal; torchvision's coder with unit weights is exactly it.
BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))


def normalise(image: torch.Tensor) -> torch.Tensor:
    """uint8 3 x H x W -> float, zero mean per channel, so that zero padding is padding with the mean."""
    return (image.float() / 255 - MEAN.to(image.device)) / STD.to(image.device)


def with_context(boxes: torch.Tensor, input_size: int, padding: float = PAPER_PADDING) -> torch.Tensor:
    """Boxes dilated about their centres so that, warped to `input_size`, padding * size / 227 pixels of context
    surround them."""
    pad = padding * input_size / PAPER_WARP
    factor = input_size / (input_size - 2 * pad)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return torch.cat([centre - half, centre + half], dim=1)


def warp_regions(image: torch.Tensor, boxes: torch.Tensor, input_size: int,
                 padding: float = PAPER_PADDING) -> torch.Tensor:
    """Regions of a normalised image (3 x H x W float) warped to K x 3 x S x S, with context padding."""
    rois = torch.cat([torch.zeros(len(boxes), 1, device=boxes.device), with_context(boxes, input_size, padding)], dim=1)
    # sampling_ratio 0: as many samples per output pixel as the region has pixels there, so shrinking averages
    return roi_align(image[None], rois.to(image.dtype), output_size=input_size, spatial_scale=1.0,
                     sampling_ratio=0, aligned=True)


def _last_linear(model: nn.Module) -> nn.Linear:
    # Every zoo architecture ends in one linear classifier, registered after any auxiliary head.
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


class RCNN(nn.Module):
    """A zoo CNN over C + 1 classes, exposing its features, with a ridge box regressor per class."""

    def __init__(self, arch: str, num_classes: int, input_size: int, dropout: float | None = None,
                 classifier: str = "softmax"):
        super().__init__()
        self.arch, self.num_classes, self.input_size = arch, num_classes, input_size
        self.backbone = get_arch(arch).build(num_classes + 1, input_size, dropout=dropout)
        self.aux_weight = get_arch(arch).recipe.aux_weight
        head = _last_linear(self.backbone)
        self.feature_dim = head.in_features
        # rows: the features and a bias; one regressor per class (row 0, background, stays zero)
        self.register_buffer("bbox_weight", torch.zeros(num_classes + 1, head.in_features + 1, 4))
        if classifier == "svm":  # registered from the start, so that every checkpoint of the job loads strictly
            self.register_buffer("svm_weight", torch.zeros(num_classes + 1, head.in_features))
            self.register_buffer("svm_bias", torch.full((num_classes + 1,), float("-inf")))
        # What scores regions: the softmax until the SVMs are fitted (fine-tuning's val scores are the network's).
        self.scorer = "softmax"
        self._features: torch.Tensor | None = None
        head.register_forward_hook(self._keep_features)

    def _keep_features(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._features = inputs[0]

    def forward(self, regions: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Logits (K x C+1), auxiliary heads' logits (GoogLeNet, Inception v3 in training), features (K x D)."""
        out = self.backbone(regions)
        if isinstance(out, tuple):  # GoogLeNetOutputs / InceptionOutputs: (logits, aux...)
            logits, aux = out[0], [a for a in out[1:] if a is not None]
        else:
            logits, aux = out, []
        features = self._features
        self._features = None
        return logits, aux, features

    def loss(self, regions: torch.Tensor, labels: torch.Tensor, forward: nn.Module | None = None) -> torch.Tensor:
        """Cross-entropy of the regions' labels; `forward` is this model wrapped in DDP on several ranks."""
        logits, aux, _ = (forward or self)(regions)
        loss = nn.functional.cross_entropy(logits, labels)
        for extra in aux:
            loss = loss + self.aux_weight * nn.functional.cross_entropy(extra, labels)
        return loss

    def regress(self, features: torch.Tensor) -> torch.Tensor:
        """Box deltas for every class: K x (C+1)*4."""
        ones = torch.ones(len(features), 1, device=features.device, dtype=features.dtype)
        x = torch.cat([features, ones], dim=1)
        return torch.einsum("kd,cdj->kcj", x, self.bbox_weight.to(x.dtype)).flatten(1)

    def class_scores(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """K x C+1 scores: softmax probabilities, or the SVMs' margins through a sigmoid (monotone, so the
        ranking and AP are the SVMs'; scores stay in [0, 1] like probabilities, for score_thresh)."""
        if self.scorer == "svm":
            return torch.sigmoid(features.float() @ self.svm_weight.T + self.svm_bias)
        return logits.float().softmax(dim=1)

    def set_svms(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.svm_weight.copy_(weight)
        self.svm_bias.copy_(bias)
        self.scorer = "svm"

    @torch.no_grad()
    def score_regions(self, image: torch.Tensor, proposals: torch.Tensor, batch: int,
                      padding: float = PAPER_PADDING) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (K x C+1, see class_scores) and regressed boxes (K x C+1 x 4) of proposals on a normalised image."""
        if len(proposals) == 0:  # nothing proposed on this image
            return proposals.new_zeros(0, self.num_classes + 1), proposals.new_zeros(0, self.num_classes + 1, 4)
        probs, boxes = [], []
        for chunk in proposals.split(batch):
            logits, _, features = self(warp_regions(image, chunk, self.input_size, padding))
            probs.append(self.class_scores(logits, features))
            decoded = BOX_CODER.decode_single(self.regress(features.float()), chunk)
            boxes.append(decoded.reshape(len(chunk), -1, 4))
        return torch.cat(probs), torch.cat(boxes)

    @torch.no_grad()
    def features(self, image: torch.Tensor, boxes: torch.Tensor, batch: int,
                 padding: float = PAPER_PADDING) -> torch.Tensor:
        return torch.cat([self(warp_regions(image, chunk, self.input_size, padding))[2].float()
                          for chunk in boxes.split(batch)])


def fit_bbox_regressors(features: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, num_classes: int,
                        ridge: float) -> torch.Tensor:
    """Per-class ridge regression, closed form, features -> (dx, dy, log dw, log dh); the bias is not penalised.

    The penalty is `ridge` times the mean squared feature per dimension times the class's sample
    count, so one value suits every architecture's feature scale (the paper's lambda = 1000 was
    for AlexNet's pool5 on VOC).
    """
    dim = features.shape[1]
    weight = torch.zeros(num_classes + 1, dim + 1, 4, dtype=torch.float64)
    for c in range(1, num_classes + 1):
        mine = labels == c
        if not mine.any():
            continue
        x = torch.cat([features[mine].double(), torch.ones(int(mine.sum()), 1, dtype=torch.float64)], dim=1)
        y = targets[mine].double()
        gram = x.T @ x
        penalty = ridge * gram.diagonal()[:dim].mean() * torch.ones(dim + 1, dtype=torch.float64)
        penalty[-1] = 1e-6 * len(x)  # the bias is free, up to keeping the solve well-posed
        weight[c] = torch.linalg.solve(gram + torch.diag(penalty), x.T @ y)
    return weight.float()


def detect(probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], score_thresh: float,
           nms_iou: float, max_detections: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS over every (proposal, class) pair scoring at least `score_thresh`: boxes, scores, labels 1..C."""
    num_classes = probs.shape[1] - 1
    scores = probs[:, 1:].reshape(-1)
    labels = torch.arange(1, num_classes + 1, device=probs.device).repeat(len(probs))
    candidates = clip_boxes_to_image(boxes[:, 1:].reshape(-1, 4), image_size)
    keep = (scores >= score_thresh) & (candidates[:, 2] > candidates[:, 0]) & (candidates[:, 3] > candidates[:, 1])
    scores, labels, candidates = scores[keep], labels[keep], candidates[keep]
    kept = batched_nms(candidates, scores, labels, nms_iou)[:max_detections]
    return candidates[kept], scores[kept], labels[kept]


def describe(model: RCNN) -> dict[str, Any]:
    return {"detector": "rcnn", "backbone": model.arch, "feature_dim": model.feature_dim,
            "context_padding_px": PAPER_PADDING * model.input_size / PAPER_WARP}
