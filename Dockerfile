# Carteco API image. The database is a separate PostGIS service (docker-compose.yml).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY carteco ./carteco
COPY geodata ./geodata
COPY api ./api
COPY tiles ./tiles
RUN pip install .
# The data folder (tile cache, PMTiles, diagnostics) is a volume in docker-compose.yml; created
# here so that a fresh named volume inherits the carteco user's ownership.
RUN useradd --system --home /app carteco \
    && mkdir -p /var/lib/carteco && chown carteco /var/lib/carteco
ENV CARTECO_DATA_DIR=/var/lib/carteco
USER carteco
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --retries=5 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
# Migrate, load the reference layers (idempotent), then serve.
CMD ["sh", "-c", "carteco db upgrade && carteco geodata load && carteco serve --host 0.0.0.0 --port 8000 --workers ${CARTECO_WORKERS:-2}"]
