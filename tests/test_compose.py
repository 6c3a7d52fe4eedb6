"""The production path, read as an operator would: docker-compose.yml, .env.example, Dockerfile.

No Docker engine runs here, so the compose file is checked statically: every image pinned,
every variable a service reads provided (from .env.example or the service's environment),
every path a service writes on a named volume.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from carteco.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Variables read by the files mounted into a service: shell `${VAR}` / `$VAR`, Caddy `{$VAR}`.
SCRIPT_VARIABLE = re.compile(r"\{\$([A-Za-z_][A-Za-z0-9_]*)\}|\$\{?([A-Z_][A-Z0-9_]*)")

# What each image sets for itself (documented by the image), so a script may read it unprovided.
IMAGE_PROVIDES = {
    "postgis/postgis": {"PGDATA", "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_PASSWORD"},
}
# The paths each image writes at run time; each must be a named volume, or its data is lost
# with the container (or, for a non-root user, not writable at all).
IMAGE_WRITES = {
    "postgis/postgis": ["/var/lib/postgresql/data"],
    "caddy": ["/data", "/config"],
    # Redis runs with --save "" --appendonly no: it writes nothing. PgBouncer keeps nothing.
    "redis": [],
    "edoburu/pgbouncer": [],
}


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for item in service.get("volumes") or []:
        source, target = item.split(":")[:2]
        mounts.append((source, target))
    return mounts


def _image_name(service: dict[str, Any]) -> str:
    return str(service["image"]).rsplit(":", 1)[0]


def test_every_image_is_pinned() -> None:
    for name, service in SERVICES.items():
        image = service.get("image")
        assert image, f"{name}: no image (a built service is tagged with CARTECO_VERSION)"
        assert ":" in image, f"{name}: {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag and tag not in {"latest", "stable", "alpine"}, f"{name}: {image} is not pinned"
        if "build" not in service:
            # A pinned third-party tag names a version: digits and dots.
            assert re.search(r"\d+\.\d+|\d+-\d", tag), f"{name}: {image} names no version"


def test_every_variable_comes_from_env_example() -> None:
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    used = set(INTERPOLATION.findall(text))
    example = _env_example()
    missing = sorted(used - set(example))
    assert not missing, f"read by docker-compose.yml but absent from .env.example: {missing}"
    unused = sorted(set(example) - used)
    assert not unused, f".env.example sets variables nothing reads: {unused}"
    # A secret has no default in the compose file: forgetting it stops compose, not the security.
    for secret in ("CARTECO_DB_PASSWORD", "CARTECO_REPLICATION_PASSWORD"):
        for m in re.finditer(r"\$\{" + secret + r"([^}]*)\}", text):
            assert m.group(1).startswith(":?"), f"{secret} has a default: {m.group(0)}"


def test_every_variable_a_mounted_file_reads_is_provided() -> None:
    checked = 0
    for name, service in SERVICES.items():
        env = set(_environment(service)) | IMAGE_PROVIDES.get(_image_name(service), set())
        for source, _target in _mounts(service):
            if not source.startswith("./"):
                continue
            text = (ROOT / source).read_text(encoding="utf-8")
            for caddy, shell in SCRIPT_VARIABLE.findall(text):
                var = caddy or shell
                assert var in env, f"{name}: {source} reads {var}, which the service never gets"
                checked += 1
    assert checked >= 3


def test_api_settings_exist_and_production_ones_are_set() -> None:
    fields = {f"CARTECO_{k.upper()}" for k in Settings.model_fields} | {"CARTECO_WORKERS"}
    for name, service in SERVICES.items():
        if "build" not in service:
            continue
        env = _environment(service)
        unknown = sorted(k for k in env if k.startswith("CARTECO_") and k not in fields)
        assert not unknown, f"{name}: settings that do not exist: {unknown}"
        for needed in ("CARTECO_DATABASE_URL", "CARTECO_DATA_DIR", "CARTECO_REDIS_URL"):
            assert env.get(needed), f"{name}: {needed} is not set"


def test_every_path_a_service_writes_is_a_volume() -> None:
    named = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        if "build" in service:
            writes = [_environment(service)["CARTECO_DATA_DIR"]]
        else:
            writes = IMAGE_WRITES[_image_name(service)]
        targets = {target: source for source, target in _mounts(service)}
        for path in writes:
            assert path in targets, f"{name} writes {path}, which is not a volume"
            assert targets[path] in named, f"{name}: {path} is not on a named volume"
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    # The non-root user must own the data folder, or a fresh volume is not writable.
    assert re.search(r"chown carteco /var/lib/carteco", dockerfile)
    assert "CARTECO_DATA_DIR=/var/lib/carteco" in dockerfile


def test_tls_profile_fronts_the_api() -> None:
    proxies = [s for s in SERVICES.values() if "tls" in (s.get("profiles") or [])]
    assert proxies, "no TLS reverse proxy profile"
    caddyfile = (ROOT / "docker" / "Caddyfile").read_text(encoding="utf-8")
    assert "reverse_proxy api:8000" in caddyfile
    assert "443:443" in proxies[0]["ports"]
