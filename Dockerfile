# syntax=docker/dockerfile:1
# One image for every service of compose.yaml but postgres: the Ray head and workers, the
# migrations and admin CLI, the leaderboard site.
#
# torch from PyPI is the CUDA build on x86_64 and brings its CUDA libraries as wheels, so a plain
# Python base serves the GPU workers; a GPU host needs only the NVIDIA driver and container toolkit.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# git: every run records the commit it ran (workers/provenance.py), read from the .git copied below.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# A virtual environment as the Makefile makes one; outside /app, so a bind mount of a checkout
# over /app (development) keeps the installed packages.
RUN python3 -m venv /opt/venv && python -m pip install -q --upgrade pip

# The dependencies alone first, read from pyproject.toml: this layer (torch, Ray: gigabytes) is
# built again only when they change, not on every change of the code.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['test']))" > /tmp/requirements.txt \
    && python -m pip install -q -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project, installed exactly as the Makefile installs it (tests/test_deploy.py compares).
COPY . .
RUN python -m pip install -q -e '.[test]'

# A user of its own: the run and dataset volumes are created from these folders, with this owner.
RUN useradd --create-home --uid 1000 convbench \
    && mkdir -p /data/runs /data/datasets \
    && chown -R convbench:convbench /data \
    && git config --system --add safe.directory /app
USER convbench

EXPOSE 6379 8265 8501 8502
CMD ["python", "-m", "orchestrator", "--help"]
