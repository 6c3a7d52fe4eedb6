"""Runtime settings, read from the environment with the ``CARTECO_`` prefix."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Folder of Carteco's own state (embedded cluster, caches, exports)."""
    if os.geteuid() == 0:
        # initdb refuses to run as root: the embedded cluster belongs to the `postgres` system
        # user, which cannot enter /root, so root's state lives under /var/lib.
        return Path("/var/lib/carteco")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "carteco"


class Settings(BaseSettings):
    """Every knob of a Carteco deployment; the API, CLI and tests all build from this object."""

    model_config = SettingsConfigDict(env_prefix="CARTECO_", env_file=None, extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the PostGIS database; unset = the embedded cluster.",
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    embedded_port: int = 54329
    pg_bin_dir: Path | None = Field(
        default=None, description="Folder of initdb/pg_ctl; found automatically when unset."
    )

    # Connection pool and guardrails.
    pool_size: int = 10
    pool_max_overflow: int = 10
    pool_timeout_s: float = 5.0
    statement_timeout_ms: int = 15000

    # HTTP service.
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None, description="Base URL as seen by clients, when behind a proxy."
    )
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])
    max_features: int = 10000
    default_limit: int = 100
    # Request bodies (docs/security.md): a 413 as soon as a cap is crossed, before any parsing.
    max_body_bytes: int = Field(
        default=1024 * 1024,
        description="Body cap of every route without a cap of its own (PATCH, JSON bodies).",
    )
    max_import_bytes: int = Field(
        default=50 * 1024 * 1024, description="Body cap of POST /imports (file + mapping)."
    )
    max_ban_csv_bytes: int = Field(
        default=50 * 1024 * 1024, description="Body cap of POST /ban/search/csv/."
    )
    max_within_bytes: int = Field(
        default=1_000_000, description="Body cap of POST /structures/within (a polygon)."
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]", "testserver"],
        description="Host headers accepted when public_url is unset (else 400); '*' = any. "
        "Ignored when public_url is set: links are then built from it alone.",
    )
    filter_max_chars: int = Field(
        default=20_000,
        description="Longest CQL2 `filter` text accepted (characters), checked before parsing.",
    )
    filter_max_depth: int = Field(
        default=64,
        description="Deepest nesting of a CQL2 filter (brackets, NOT/sign/operator chains), "
        "checked by a pre-scan before the native parser, which would overflow its stack.",
    )
    import_max_rows: int = Field(
        default=1_000_000, description="Most data rows an import file may hold."
    )
    import_max_columns: int = Field(
        default=1_000,
        description="Most columns an import file may hold (an XLSX cell beyond is refused).",
    )
    bulk_import_min_rows: int = Field(
        default=50_000,
        description="CSV imports of at least this many lines take the bulk path "
        "(streamed, COPY, set-based upsert); `carteco import --bulk/--no-bulk` forces it.",
    )

    # Data licence shown with every download.
    data_licence: str = "ODbL-1.0"
    data_attribution: str = "Carteco — CRESS et contributeurs"

    # Vector tiles and the public map.
    basemap_style_url: str | None = Field(
        default=None,
        description="Online MapLibre style of the basemap (e.g. Plan IGN); unset = the offline "
        "style built from the shipped reference data (names, boundaries, stations).",
    )
    basemap_origins: list[str] = Field(
        default_factory=list,
        description="Further origins the online style loads tiles, glyphs or sprites from "
        "(JSON list), allowed by the pages' CSP beside the style's own origin.",
    )
    basemap_attribution: str | None = Field(
        default=None,
        description="Attribution of the online basemap shown on the map (e.g. © IGN).",
    )
    map_pmtiles_url: str | None = Field(
        default=None,
        description="PMTiles archive (carteco tiles export) the map reads instead of live tiles; "
        "on another origin (a CDN), that origin is allowed by the pages' CSP.",
    )
    tile_cache_enabled: bool = True
    tile_cache_max_tiles: int = 100_000
    tile_max_age_s: int = 10

    # Reliability and security.
    database_replica_urls: list[str] = Field(
        default_factory=list,
        description="Streaming replicas for reads (JSON list); writes always go to the primary.",
    )
    rate_limit_reads_per_minute: int = Field(
        default=6000, description="Per client IP on public reads; 0 disables."
    )
    rate_limit_writes_per_minute: int = Field(
        default=120, description="Per client address on writes; 0 disables."
    )
    auth_failures_per_minute: int = Field(
        default=10,
        description="Failed authentications (401) per client address: this many at once, then "
        "this many a minute; beyond, 429 before the token is even looked up. 0 disables.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies whose forwarding header "
        "is believed; from anyone else the socket's address is the client.",
    )
    client_ip_header: str = Field(
        default="x-forwarded-for",
        pattern=r"^(?i:x-forwarded-for|forwarded)$",
        description="Header the trusted proxies write the client address in: "
        "x-forwarded-for or forwarded (RFC 7239).",
    )
    ban_csv_max_rows: int = Field(
        default=100_000, description="Data rows of one POST /ban/search/csv/ file (400 beyond)."
    )
    ban_csv_max_concurrent: int = Field(
        default=2,
        description="CSV geocoding jobs at once per worker process, on a pool of their own of "
        "this many connections (503 with Retry-After when full).",
    )
    geocoder_memory_addresses: int = Field(
        default=2_000_000,
        ge=0,
        description="The geocoder holds the housenumbers in memory in each worker process "
        "(about 100 bytes each) when the reference has at most this many addresses; beyond, "
        "they are read from PostGIS, one round trip per batch. 0: always from PostGIS.",
    )
    ban_csv_per_client: int = Field(
        default=1, description="CSV geocoding jobs at once per client address (429 beyond)."
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis (redis://host:6379/0) holding the rate-limit buckets, shared by every "
        "worker and API machine; without it each worker process counts on its own.",
    )
    redis_key_prefix: str = Field(
        default="carteco:", description="Prefix of Carteco's keys in that Redis."
    )
    frame_ancestors: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Origins allowed to embed the public pages in an iframe (CSP).",
    )
    pgbouncer: bool = Field(
        default=False,
        description="The URL goes through PgBouncer in transaction mode: no prepared "
        "statements, no startup options, timeouts set per transaction.",
    )
    database_direct_url: str | None = Field(
        default=None,
        description="Direct primary URL for migrations and imports (session-level locks) "
        "when database_url goes through PgBouncer.",
    )
    request_timeout_s: float = 30.0
    log_json: bool = True
    chromium: str | None = Field(
        default=None,
        description="Chromium binary that prints reports to PDF; found on PATH when unset.",
    )

    # Contributions, moderation, self-update links and mail (docs/settings.md).
    secret_key: str | None = Field(
        default=None,
        description="Secret signing the self-update links (HMAC-SHA256); unset = no link "
        "can be made or accepted.",
    )
    edit_link_days: int = Field(default=30, description="Validity of a self-update link (days).")
    session_hours: int = Field(default=12, description="Lifetime of a staff session (hours).")
    login_failures_max: int = Field(
        default=5,
        description="Failed logins per account and per client address in 15 minutes before "
        "login is refused (0 = off).",
    )
    contrib_min_fill_s: float = Field(
        default=3.0, description="Shortest time (s) between showing a form and sending it."
    )
    contrib_per_hour: int = Field(
        default=20, description="Submissions per client address and hour (0 = off)."
    )
    contrib_max_bytes: int = Field(
        default=64 * 1024, description="Body cap of a public submission (bytes)."
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server for mails; unset = mails go to the log and outbox."
    )
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "carteco@localhost"
    moderator_emails: list[str] = Field(
        default_factory=list, description="Addresses of the moderators' digest."
    )

    def effective_data_dir(self) -> Path:
        """The data folder, created if needed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


def get_settings() -> Settings:
    """Settings from the current environment."""
    return Settings()
