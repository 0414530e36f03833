"""The deployment files agree with the code: compose.yaml, Dockerfile, .dockerignore, .env.example.

No Docker engine is needed: compose.yaml is validated against the Compose Specification's JSON
schema (tests/data/compose-spec.json, compose-spec/compose-spec's schema/compose-spec.json as
vendored by the check-jsonschema package, Apache-2.0), interpolated the way Compose does it, and
every command, port, variable and path in it is checked against this virtualenv, which the
Dockerfile builds the same way the Makefile does.
"""
from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OUR_IMAGE = ("migrate", "ray-head", "ray-worker", "gate", "leaderboard")
RAY_NODES = ("ray-head", "ray-worker")
RUNS, DATASETS = "/data/runs", "/data/datasets"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, $$, $NAME
VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                      r"|(?P<bare>[A-Za-z_]\w*))")


# --- reading the files ---------------------------------------------------------------------

@cache
def compose_text() -> str:
    return (ROOT / "compose.yaml").read_text()


def compose() -> dict[str, Any]:
    return yaml.safe_load(compose_text())


def env_example() -> tuple[dict[str, str], dict[str, str]]:
    """(set, commented): the `NAME=value` lines of .env.example, and the `#NAME=default` ones."""
    set_, commented = {}, {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if m := re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(.*)", line):
            set_[m[1]] = m[2]
        elif m := re.fullmatch(r"#([A-Z_][A-Z0-9_]*)=(.*)", line):
            commented[m[1]] = m[2]
    return set_, commented


def uses() -> list[re.Match]:
    return [m for m in VARIABLE.finditer(compose_text()) if not m["escaped"]]


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of every string in the file (values, not keys)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        name, op, arg = m["name"] or m["bare"], m["op"], m["arg"]
        present, nonempty = name in env, bool(env.get(name))
        if op is None:
            if not present:
                raise KeyError(f"${name} is unset and has no default")
            return env[name]
        if op in (":-", "-"):
            return env[name] if (nonempty if op == ":-" else present) else arg
        if op in (":?", "?"):
            if not (nonempty if op == ":?" else present):
                raise KeyError(f"${name}: {arg}")
            return env[name]
        return arg if (nonempty if op == ":+" else present) else ""

    return VARIABLE.sub(one, value)


def deployed_env() -> dict[str, str]:
    """The environment of a filled-in .env: the example's values, each empty secret given one."""
    set_, _ = env_example()
    return {k: v or f"test-{k.lower().replace('_', '-')}" for k, v in set_.items()}


def resolved() -> dict[str, Any]:
    return interpolate(compose(), deployed_env())


def services() -> dict[str, Any]:
    return resolved()["services"]


def argvs(service: dict[str, Any]) -> list[list[str]]:
    """The service's command lines: one, or each of `sh -c "a && b"`."""
    command = service["command"]
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in argv[2].split("&&")]
    return [argv]


def container_ports(service: dict[str, Any]) -> set[int]:
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def flag(argv: list[str], name: str) -> str:
    """The value of `--name=value` or `--name value` in argv."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name:
            return argv[i + 1]
    raise AssertionError(f"{name} not in {argv}")


@cache
def help_text(*argv: str) -> str:
    out = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=300, check=False,
                         env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, f"{' '.join(argv)} --help failed:\n{out.stderr[-2000:]}"
    return out.stdout


# --- compose.yaml against the Compose Specification -----------------------------------------

@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_compose_file_is_valid_before_and_after_interpolation(validator: Draft202012Validator) -> None:
    for document in (compose(), resolved()):
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == []


def test_the_schema_rejects_what_compose_rejects(validator: Draft202012Validator) -> None:
    # Not a schema that accepts anything: a misspelt key and a wrong depends_on condition fail.
    bad = compose()
    bad["services"]["ray-worker"]["comand"] = "ray start"
    assert not validator.is_valid(bad)
    bad = compose()
    bad["services"]["leaderboard"]["depends_on"]["migrate"]["condition"] = "service_done"
    assert not validator.is_valid(bad)


def test_services_start_in_order_one_after_the_other_is_ready() -> None:
    s = services()
    assert set(s) == {"postgres", "migrate", "ray-head", "ray-worker", "gate", "leaderboard"}
    assert s["postgres"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(s["postgres"]["healthcheck"]["test"])
    assert s["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ray-head", "gate", "leaderboard"):
        assert s[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert s["leaderboard"]["depends_on"]["gate"]["condition"] == "service_healthy"  # its Submit page posts there
    assert "/healthz" in " ".join(s["gate"]["healthcheck"]["test"])
    assert s["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "healthcheck" in s["ray-head"]
    assert s["migrate"]["restart"] == "no"  # one-shot


def test_every_container_of_the_project_runs_one_image_built_here() -> None:
    s = services()
    assert len({s[name]["image"] for name in OUR_IMAGE}) == 1
    assert all(s[name]["build"] == "." for name in OUR_IMAGE)


def test_workers_reserve_gpus_and_scale() -> None:
    worker = services()["ray-worker"]
    assert "container_name" not in worker  # a fixed name would forbid --scale
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    count = str(devices[0]["count"])
    assert count == "all" or int(count) >= 1
    assert "deploy" not in services()["ray-head"]  # the head schedules; GPUs belong to the workers


# --- commands exist in the image --------------------------------------------------------------

def test_every_command_runs_an_installed_entry_point() -> None:
    scripts = {ep.name for ep in importlib.metadata.entry_points(group="console_scripts")}
    seen = set()
    for name in OUR_IMAGE:
        for argv in argvs(services()[name]):
            program = argv[0]
            seen.add(program if program != "python" else f"python -m {argv[2]}")
            if program == "python":
                assert argv[1] == "-m", argv
                assert importlib.util.find_spec(f"{argv[2]}.__main__") is not None, argv
                help_text(str(BIN / "python"), "-m", argv[2])
            else:
                assert program in scripts and (BIN / program).is_file(), f"{program}: no such entry point"
    assert seen == {"ray", "streamlit", "python -m db", "convbench"}


def test_ray_and_streamlit_accept_every_flag_given() -> None:
    ray_help = help_text(str(BIN / "ray"), "start")
    for name in RAY_NODES:
        (argv,) = argvs(services()[name])
        assert argv[:2] == ["ray", "start"] and "--block" in argv  # in the foreground: the container's life
        for arg in argv[2:]:
            option = re.escape(arg.split("=")[0])
            assert re.search(rf"^\s+{option}\b", ray_help, re.MULTILINE), f"ray start has no {arg}"
    (argv,) = argvs(services()["leaderboard"])
    assert argv[:3] == ["streamlit", "run", "leaderboard/app.py"] and (ROOT / argv[2]).is_file()
    streamlit_help = help_text(str(BIN / "streamlit"), "run")
    for arg in argv[3::2]:
        assert f"{arg} " in streamlit_help, f"streamlit run has no {arg}"


def test_migrate_upgrades_then_grants_with_valid_arguments() -> None:
    from db.__main__ import parser

    upgrade, grant = argvs(services()["migrate"])
    assert upgrade[:4] == ["python", "-m", "db", "upgrade"] and grant[:4] == ["python", "-m", "db", "grant"]
    for argv in (upgrade, grant):
        parser().parse_args(argv[3:])  # exits (fails the test) on an unknown option


def test_the_commands_the_readme_runs_exist_with_their_options() -> None:
    # README, "Run on a cluster": a suite submitted to the head, the admin CLI through `migrate`.
    orchestrator = help_text(str(BIN / "python"), "-m", "orchestrator", "run")
    for option in ("--suite", "--db", "--storage", "--address"):
        assert re.search(rf"^\s+{option}\b", orchestrator, re.MULTILINE), option
    assert "create-challenge" in help_text(str(BIN / "python"), "-m", "leaderboard", "admin")
    assert "--runner-role" in help_text(str(BIN / "python"), "-m", "db", "grant")
    assert (BIN / "ray").is_file() and "submit" in help_text(str(BIN / "ray"), "job")


def test_dockerfile_default_command_exists() -> None:
    cmd = json.loads(re.search(r"^CMD (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[1])
    assert cmd[:2] == ["python", "-m"] and importlib.util.find_spec(f"{cmd[2]}.__main__") is not None


# --- ports ------------------------------------------------------------------------------------

def test_ports_agree_with_the_commands_and_the_libraries() -> None:
    from ray._private import ray_constants
    from streamlit import config

    s = services()
    (head,) = argvs(s["ray-head"])
    (worker,) = argvs(s["ray-worker"])
    (site,) = argvs(s["leaderboard"])
    gcs, dashboard = int(flag(head, "--port")), int(flag(head, "--dashboard-port"))
    site_port = int(flag(site, "--server.port"))
    # The libraries' defaults, so `ray job submit --address http://HOST:8265` and the docs apply as they are.
    assert (gcs, dashboard, site_port) == (ray_constants.DEFAULT_PORT, ray_constants.DEFAULT_DASHBOARD_PORT,
                                           config.get_option("server.port"))
    assert container_ports(s["ray-head"]) == {gcs, dashboard}
    assert container_ports(s["leaderboard"]) == {site_port}
    assert container_ports(s["postgres"]) == {5432}
    assert flag(worker, "--address") == f"ray-head:{gcs}"
    assert flag(head, "--dashboard-host") == "0.0.0.0" and flag(site, "--server.address") == "0.0.0.0"
    assert f"127.0.0.1:{dashboard}/" in " ".join(s["ray-head"]["healthcheck"]["test"])
    assert f"127.0.0.1:{site_port}/" in " ".join(s["leaderboard"]["healthcheck"]["test"])
    for name in ("migrate", "ray-head", "gate", "leaderboard"):
        url = make_url(s[name]["environment"]["CONVBENCH_DB"])
        assert (url.host, url.port or 5432) == ("postgres", 5432)
    exposed = {int(p) for p in re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[1].split()}
    (gate,) = argvs(s["gate"])
    gate_port = int(flag(gate, "--port"))
    assert container_ports(s["gate"]) == {gate_port} and flag(gate, "--host") == "0.0.0.0"
    assert f"127.0.0.1:{gate_port}/healthz" in " ".join(s["gate"]["healthcheck"]["test"])
    assert exposed == {gcs, dashboard, site_port, gate_port}


# --- environment variables ----------------------------------------------------------------------

@cache
def _ray_reads(name: str) -> bool:
    ray_root = Path(importlib.util.find_spec("ray").origin).parent
    needle = re.compile(rf"[\"']{name}[\"']")
    return any(needle.search(p.read_text(errors="ignore")) for p in ray_root.rglob("*.py") if "test" not in p.name)


def test_environment_names_are_the_ones_the_code_reads() -> None:
    from db.engine import URL_ENV
    from leaderboard.admin import TOKEN_ENV
    from leaderboard.gate_client import GATE_URL_ENV, SITE_KEY_ENV

    s = services()
    for name in OUR_IMAGE:
        passed_by_name = {arg for argv in argvs(s[name]) for prev, arg in pairwise(argv) if prev.endswith("-env")}
        for key in s[name].get("environment", {}):
            ours = key in (URL_ENV, TOKEN_ENV, GATE_URL_ENV, SITE_KEY_ENV) or key in passed_by_name
            assert ours or (key.startswith("RAY_") and _ray_reads(key)), f"{name}: nothing reads ${key}"
    assert set(s["postgres"]["environment"]) == {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}


def test_each_service_connects_as_its_role() -> None:
    from db.engine import URL_ENV

    s = services()
    grant = argvs(s["migrate"])[1]
    pg = s["postgres"]["environment"]
    owner, runner, site, gate = (make_url(s[n]["environment"][URL_ENV])
                                 for n in ("migrate", "ray-head", "leaderboard", "gate"))
    assert (owner.username, owner.password, owner.database) == (
        pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    assert runner.username == flag(grant, "--runner-role") and site.username == flag(grant, "--site-role")
    assert runner.password == s["migrate"]["environment"][flag(grant, "--runner-password-env")]
    assert site.password == s["migrate"]["environment"][flag(grant, "--site-password-env")]
    assert gate.username == flag(grant, "--gate-role")
    assert gate.password == s["migrate"]["environment"][flag(grant, "--gate-password-env")]
    assert runner.database == site.database == gate.database == owner.database
    assert len({owner.username, runner.username, site.username, gate.username}) == 4
    # The site reaches the gate by its service name and port.
    (gate_argv,) = argvs(s["gate"])
    assert s["leaderboard"]["environment"]["CONVBENCH_GATE_URL"] == f"http://gate:{flag(gate_argv, '--port')}"
    # Workers never touch the database (the driver records results): they get no credentials.
    assert URL_ENV not in s["ray-worker"].get("environment", {})
    for name in RAY_NODES:
        assert s[name]["environment"]["RAY_AUTH_MODE"] == "token"
        assert s[name]["environment"]["RAY_AUTH_TOKEN"] == deployed_env()["RAY_AUTH_TOKEN"]


def test_env_example_documents_every_variable_with_its_default() -> None:
    set_, commented = env_example()
    bare = [m[0] for m in uses() if m["bare"]]
    assert bare == [], "write ${NAME}, not $NAME"
    used = {m["name"] for m in uses()}
    assert used == set(set_) | set(commented), "documented but unused, or used but undocumented"
    for m in uses():
        if m["op"] in (None, "?", ":?"):
            assert m["name"] in set_, f"${m['name']} is required: .env.example must set it"
        elif m["op"] in ("-", ":-") and m["arg"]:
            assert commented.get(m["name"], m["arg"]) == m["arg"], f"${m['name']}: .env.example shows another default"
    # Secrets have empty defaults in compose.yaml, so the example must ask for them.
    for m in uses():
        if m["op"] == ":-" and not m["arg"]:
            assert m["name"] in set_ and set_[m["name"]] == "", m["name"]
    with pytest.raises(KeyError, match="RAY_AUTH_TOKEN"):
        interpolate(compose(), {k: v for k, v in deployed_env().items() if k != "RAY_AUTH_TOKEN"})


def test_no_secret_is_written_in_compose_yaml() -> None:
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in ("PASSWORD", "TOKEN", "DB")):
                assert "${" in str(value), f"{name}: {key} is written in the file"


# --- volumes and paths ------------------------------------------------------------------------

def test_ray_nodes_share_the_storage_folder_and_the_site_reads_none_of_it() -> None:
    s = services()
    for name in RAY_NODES:
        mounts = dict(reversed(v.split(":")[:2]) for v in s[name]["volumes"])
        assert mounts[RUNS] == "runs" and mounts[DATASETS] == "datasets", name
    # The site opens no file of a run: a run's log is data in the database (invariant on logs).
    assert "volumes" not in s["leaderboard"]
    assert {"runs", "datasets", "pgdata"} <= set(resolved()["volumes"])
    assert any(v.startswith("pgdata:/var/lib/postgresql") for v in s["postgres"]["volumes"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"mkdir -p {RUNS} {DATASETS}", dockerfile)  # a named volume takes the folder's owner


def test_the_orchestrator_keeps_the_storage_path_every_node_mounts() -> None:
    from orchestrator.campaign import with_storage
    from orchestrator.cli import spool_folder
    from orchestrator.suite import load_suite

    suite = load_suite(ROOT / "suites" / "smoke.toml")
    jobs = with_storage(suite, RUNS)
    assert jobs and {job.storage for job in jobs} == {RUNS}
    assert all(str(job.folder).startswith(f"{RUNS}/") for job in jobs)
    assert spool_folder(RUNS, suite.storage).startswith(f"{RUNS}/")


# --- Dockerfile against the Makefile ------------------------------------------------------------

def _pip_installs_of_the_project(text: str) -> list[list[str]]:
    """The arguments of each `pip install` whose target is this directory (`.`, `.[extras]`)."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        for part in re.split(r"&&|;", line):
            if "pip install" not in part:
                continue
            words = shlex.split(part.replace("$(PY)", "python"), comments=False)
            if "pip" in words and "install" in words:
                args = words[words.index("install") + 1:]
                if any(a.startswith(".") for a in args if not a.startswith("-")):
                    found.append([a for a in args if a not in ("-q", "--quiet")])
    return found


def test_dockerfile_installs_the_project_as_the_makefile_does() -> None:
    make = _pip_installs_of_the_project((ROOT / "Makefile").read_text())
    docker = _pip_installs_of_the_project((ROOT / "Dockerfile").read_text())
    assert make == [["-e", ".[test]"]]
    assert docker == make
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python3 -m venv" in dockerfile and "pip install -q --upgrade pip" in dockerfile
    base = re.search(r"^ARG PYTHON_IMAGE=python:(\d+\.\d+)", dockerfile, re.MULTILINE)[1]
    assert base == f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python the tests run on


def _dockerignored(path: str, patterns: list[str]) -> bool:
    excluded = False
    for pattern in patterns:
        negate, pattern = pattern.startswith("!"), pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p.split("/")[-1], pattern[3:]) for p in prefixes)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_image() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (".venv/bin/python", "runs/resnet18/ckpt.pt", "data/imagenet/train/x.JPEG", "convbench.db",
                 "convbench.db-wal", ".env", "db/__pycache__/engine.cpython-311.pyc", "convbench.egg-info/PKG-INFO"):
        assert _dockerignored(path, patterns), f"{path} would be in the image"
    for path in ("pyproject.toml", "README.md", "db/migrations/versions/0001_initial_schema.py", "leaderboard/app.py",
                 "suites/smoke.toml", ".git/HEAD", ".env.example", "bench/results/latest.json"):
        assert not _dockerignored(path, patterns), f"{path} would be missing from the image"
