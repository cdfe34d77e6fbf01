# The product's one image: the worker, the sink + API, and the producer/verify tools all
# run from it (see docker-compose.yml, which builds it as hotspots:<version>).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOTSPOTS_DATA_DIR=/var/lib/hotspots

# A fixed uid, so named volumes keep their owner across rebuilds. The data dir exists in
# the image owned by that user: Docker copies that ownership into a new named volume.
RUN useradd --system --uid 10001 --create-home --home-dir /home/hotspots hotspots \
    && install -d -o hotspots -g hotspots /var/lib/hotspots

# Only what the package needs (not .venv, tests or caches). Dependencies are pinned in
# pyproject.toml, so a rebuild installs the same versions.
COPY pyproject.toml /src/
COPY hotspots /src/hotspots
COPY producers /src/producers
COPY streams /src/streams
COPY sinks /src/sinks
RUN pip install /src && rm -rf /src

USER hotspots
WORKDIR /home/hotspots
CMD ["hotspots", "--help"]
