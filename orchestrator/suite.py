"""Benchmark suites: TOML files parsed into typed objects and expanded into jobs.

A suite names datasets, architectures (or "all"), seeds, recipe overrides and the resources
each job asks for. The optional [detection] table has the same shape for the detector track.
Every mistake is reported before anything runs, as "<file>: <field>: <reason>".
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from workers.classical.recipe import resolve_recipe as resolve_classical_recipe
from workers.datasets import dataset_config, get_dataset
from workers.detection.detectors import detector_archs, detector_kind
from workers.detection.recipe import DetectorRecipe, parse_recipe, resolve_recipe
from workers.jobs import JobSpec, Resources
from workers.recipes import Recipe
from workers.typed import ConfigError, from_dict, join
from workers.zoo import ARCHS, get_arch

# What a track's architectures name: a classifier of the zoo, or a detector of the registry
# (workers.detection.detectors), whose kind and recipe are known without importing torch.
ARCH_NAMES = {"classification": lambda: list(ARCHS), "detection": detector_archs}


@dataclass(frozen=True)
class Track:
    """One task's part of a suite: which models on which data, trained how, on what."""

    architectures: Any = "all"  # "all" or a list of names
    datasets: list[dict[str, Any]] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)  # overrides for every architecture
    overrides: dict[str, Any] = field(default_factory=dict)  # per architecture or family: {name: {field: value}}
    resources: Resources = field(default_factory=Resources)
    input_size: int = 0  # 0: the dataset's image size, raised to what each architecture accepts

    def arch_names(self, task: str, where: str) -> list[str]:
        names = self.architectures
        if names == "all":
            return list(ARCHS) if task == "classification" else ["alexnet"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(f'{join(where, "architectures")}: expected "all" or a non-empty list of names, got {names!r}')
        known = ARCH_NAMES[task]()
        for name in names:
            if name not in known:
                raise ConfigError(f"{join(where, 'architectures')}: unknown architecture {name!r}; known: {', '.join(known)}")
        return names


@dataclass(frozen=True)
class Suite:
    name: str
    path: str
    storage: str
    seeds: tuple[int, ...]
    max_failures: int
    tracks: dict[str, Track]  # task -> track

    def jobs(self) -> list[JobSpec]:
        return expand(self)


SUITE_KEYS = {"name", "storage", "seeds", "max_failures", "detection", *Track.__dataclass_fields__}


def load_suite(path: str | Path) -> Suite:
    path = Path(path)
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such suite file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    return parse_suite(raw, where)


def parse_suite(raw: dict[str, Any], where: str) -> Suite:
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]}: unknown field; known: {', '.join(sorted(SUITE_KEYS))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name: a suite needs a non-empty name")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{where}: seeds: expected a non-empty list of integers, got {seeds!r}")
    max_failures = raw.get("max_failures", 2)
    if not isinstance(max_failures, int) or max_failures < 0:
        raise ConfigError(f"{where}: max_failures: expected a non-negative integer, got {max_failures!r}")
    storage = raw.get("storage", "runs")
    if not isinstance(storage, str):
        raise ConfigError(f"{where}: storage: expected a path, got {storage!r}")

    tracks = {}
    classification = {k: v for k, v in raw.items() if k in Track.__dataclass_fields__}
    if classification.get("datasets"):
        tracks["classification"] = _track(classification, "classification", f"{where}: ")
    if "detection" in raw:
        tracks["detection"] = _track(raw["detection"], "detection", f"{where}: detection")
    if not tracks:
        raise ConfigError(f"{where}: datasets: a suite needs at least one dataset")
    suite = Suite(name, where, storage, tuple(seeds), max_failures, tracks)
    suite.jobs()  # expanding checks every architecture against its input size
    return suite


def _track(raw: Any, task: str, where: str) -> Track:
    track = from_dict(Track, raw, where)
    if not isinstance(track.datasets, list) or not track.datasets:
        raise ConfigError(f"{join(where, 'datasets')}: expected a non-empty list of tables")
    for i, ds in enumerate(track.datasets):
        here = join(where, f"datasets[{i}]")
        if not isinstance(ds, dict) or not isinstance(ds.get("name"), str):
            raise ConfigError(f"{here}.name: each dataset needs a name")
        try:
            entry = get_dataset(ds["name"])
        except KeyError as exc:
            raise ConfigError(f"{here}.name: {exc.args[0]}") from None
        if entry.task != task:
            raise ConfigError(f"{here}.name: {ds['name']!r} is a {entry.task} dataset, not {task}")
        _wrap(partial(dataset_config, ds["name"], ds, here), here)
    if task == "classification":
        Recipe().override(track.recipe, join(where, "recipe"))
    for key, changes in track.overrides.items():
        if key not in ARCHS and key not in {a.family for a in ARCHS.values()} and key not in track.arch_names(task, where):
            raise ConfigError(f"{join(where, 'overrides.' + key)}: not an architecture or family name")
        if not isinstance(changes, dict):
            raise ConfigError(f"{join(where, 'overrides.' + key)}: expected a table of recipe fields")
        if task == "classification" and key in CLASSICAL_KEYS:  # the classical pipeline's own recipe fields
            resolve_classical_recipe(changes, join(where, "overrides." + key))
        elif task == "classification":
            Recipe().override(changes, join(where, "overrides." + key))
    if task == "detection":
        for arch in track.arch_names(task, where):
            detector_recipe(track, arch, where)
    track.arch_names(task, where)
    return track


def _wrap(check, where: str) -> Any:
    try:
        return check()
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def recipe_for(track: Track, arch: str, task: str) -> Recipe:
    """The paper's recipe for the architecture, then the suite's overrides: global, family, architecture."""
    base = get_arch(arch).recipe if arch in ARCHS and task == "classification" else Recipe()
    family = ARCHS[arch].family if arch in ARCHS else None
    recipe = base.override(track.recipe)
    for key in (family, arch):
        if key and key in track.overrides:
            recipe = recipe.override(track.overrides[key])
    return recipe


# The classical pipeline (workers.classical) takes only its own recipe, from its family's and its own overrides:
# a suite's global [recipe] trains networks (epochs, lr, batch size) and would only change its job ids.
CLASSICAL_KEYS = {key for name, a in ARCHS.items() if a.task == "classical" for key in (name, a.family)}


def classical_recipe(track: Track, arch: str) -> dict[str, Any]:
    family = ARCHS[arch].family
    changes = {**track.overrides.get(family, {}), **track.overrides.get(arch, {})}
    return resolve_classical_recipe(changes, f"overrides.{arch}")


def detector_changes(track: Track, arch: str) -> dict[str, Any]:
    """The detection track's recipe fields for one detector: global, then backbone family, then architecture."""
    family = ARCHS[arch].family if arch in ARCHS else None
    return {**track.recipe, **track.overrides.get(family, {}), **track.overrides.get(arch, {})}


def detector_recipe(track: Track, arch: str, where: str) -> None:
    """Checks one detector's recipe by its own type: an unknown field, a wrong type or a value its kind refuses."""
    changes = detector_changes(track, arch)
    here = join(where, "overrides." + arch if arch in track.overrides else "recipe")
    unknown = sorted(set(changes) - {f.name for f in fields(DetectorRecipe)})
    if unknown:
        raise ConfigError(f"{join(here, unknown[0])}: unknown field of the detector's recipe")
    _wrap(lambda: parse_recipe(changes, detector_kind(arch), here), f"{here} ({arch})")


def expand(suite: Suite) -> list[JobSpec]:
    jobs = []
    for task, track in suite.tracks.items():
        for ds in track.datasets:
            options = {k: v for k, v in ds.items() if k != "name"}
            for arch in track.arch_names(task, suite.path):
                # Without an input size of the suite's or the data's own, each model gets its paper's.
                size = track.input_size or options.get("image_size") or (ARCHS[arch].native_size if arch in ARCHS else 224)
                if arch in ARCHS:
                    minimum = ARCHS[arch].min_size
                    if track.input_size and size < minimum:
                        raise ConfigError(f"{suite.path}: input_size: {arch} needs at least {minimum} px, got {size}")
                    size = max(size, minimum)
                job_task = ARCHS[arch].task if task == "classification" else task  # its loop: workers.tasks
                if job_task == "classical":
                    recipe = classical_recipe(track, arch)
                elif task == "classification":
                    recipe = _wrap(partial(recipe_for, track, arch, task), f"{suite.path}: overrides.{arch}").to_dict()
                else:  # resolved as the job trains by it: the detector's own defaults, then the suite's changes
                    recipe = resolve_recipe(detector_changes(track, arch), arch)
                for seed in suite.seeds:
                    jobs.append(JobSpec(
                        suite=suite.name, task=job_task, arch=arch, dataset=ds["name"], dataset_options=options,
                        recipe=recipe,
                        seed=seed, input_size=size, resources=track.resources, storage=suite.storage,
                        max_failures=suite.max_failures))
    return jobs
