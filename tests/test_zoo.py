"""The model zoo: every architecture builds, trains a step at its smallest input, and counts like torchvision."""
from __future__ import annotations

import pytest
import torch

from workers.metrics import TopKCounter
from workers.recipes import Recipe
from workers.train import loss_fn
from workers.zoo import ARCHS, count_flops, count_params, get_arch, networks

LECTURE = ["alexnet", *[f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")], "googlenet", "inception_v3",
           *[f"resnet{d}" for d in (18, 34, 50, 101, 152)], *[f"densenet{d}" for d in (121, 161, 169, 201)]]


def test_registry_holds_every_architecture_of_the_lecture():
    assert sorted(ARCHS) == sorted([*LECTURE, "sift_fv_svm"])  # and its classical row (workers.classical)
    assert sorted(networks()) == sorted(LECTURE) and get_arch("sift_fv_svm").task == "classical"
    for arch in map(get_arch, networks()):
        assert arch.paper and 2012 <= arch.year <= 2016 and arch.native_size in (224, 299)
        assert isinstance(arch.recipe, Recipe)
    assert get_arch("alexnet").recipe.weight_decay == 5e-4 and get_arch("vgg16").recipe.weight_decay == 5e-4
    assert get_arch("resnet50").recipe.weight_decay == 1e-4
    assert get_arch("googlenet").recipe.aux_weight == 0.3 and get_arch("inception_v3").recipe.aux_weight == 0.4
    assert get_arch("inception_v3").recipe.label_smoothing == 0.1


@pytest.mark.parametrize("name", LECTURE)
def test_one_training_step_at_the_smallest_input(name):
    torch.manual_seed(0)
    arch = get_arch(name)
    model = arch.build(num_classes=7, input_size=arch.min_size)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x, y = torch.randn(2, 3, arch.min_size, arch.min_size), torch.tensor([0, 6])
    loss, logits = loss_fn(model(x), y, torch.nn.CrossEntropyLoss(), arch.recipe.aux_weight)
    loss.backward()
    before = [p.detach().clone() for p in model.parameters()][-1]
    opt.step()
    assert logits.shape == (2, 7) and torch.isfinite(loss)
    assert not torch.equal(before, list(model.parameters())[-1])


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "googlenet", "inception_v3"])
def test_below_the_smallest_input_is_refused(name):
    arch = get_arch(name)
    with pytest.raises(ValueError, match=f"at least {arch.min_size} px"):
        arch.build(num_classes=3, input_size=arch.min_size - 1)
    bare = arch.builder(weights=None, num_classes=3, **({"aux_logits": False, "init_weights": True}
                                                         if arch.family in ("googlenet", "inception") else {}))
    with pytest.raises(RuntimeError):
        bare.eval()(torch.zeros(1, 3, arch.min_size - 1, arch.min_size - 1))


# torchvision's published tables: (parameters in millions, GFLOPS counting a multiply-add once).
PUBLISHED = {"alexnet": (61.1, 0.71), "vgg16": (138.36, 15.47), "googlenet": (6.62, 1.50),
             "inception_v3": (27.16, 5.71), "resnet50": (25.56, 4.09), "densenet121": (7.98, 2.83)}


@pytest.mark.parametrize("name", PUBLISHED)
def test_parameters_and_flops_agree_with_torchvision(name):
    arch = get_arch(name)
    model = arch.build(num_classes=1000)
    params_m, gmacs = PUBLISHED[name]
    assert count_params(model, arch.training_only) / 1e6 == pytest.approx(params_m, abs=0.01)
    assert count_flops(model, arch.native_size) / 2e9 == pytest.approx(gmacs, rel=0.01)


def test_topk_agrees_with_an_independent_count():
    g = torch.Generator().manual_seed(3)
    logits, targets = torch.randn(500, 12, generator=g), torch.randint(0, 12, (500,), generator=g)
    counter = TopKCounter()
    for chunk in range(0, 500, 64):
        counter.update(logits[chunk:chunk + 64], targets[chunk:chunk + 64])
    errors = counter.errors()
    ranks = (logits > logits.gather(1, targets[:, None])).sum(1)  # how many classes beat the label
    for k in range(1, 6):
        assert errors[k] == pytest.approx(1 - (ranks < k).float().mean().item())
    assert errors[1] >= errors[5]


def test_the_imagenet_suite_lists_every_network_of_the_zoo() -> None:
    import tomllib
    from pathlib import Path

    from workers.zoo import networks

    suite = tomllib.loads((Path(__file__).resolve().parents[1] / "suites" / "imagenet.toml").read_text())
    assert suite["architectures"] == networks()  # a network added to the zoo is added to the real campaign
