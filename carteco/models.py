"""The registry's tables, as SQLAlchemy 2 / GeoAlchemy2 models (migrations live in Alembic)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ESS_FAMILIES = (
    "association",
    "cooperative",
    "mutuelle",
    "fondation",
    "societe_commerciale_ess",
    "inconnue",
)
PRECISIONS = ("provided", "housenumber", "street", "locality", "municipality", "manual")
GEOCODE_STATUSES = ("to_geocode", "geocoded", "to_review", "failed")
STATUSES = ("active", "closed")
TERRITORY_LEVELS = ("region", "departement", "epci", "ept", "commune", "arrondissement", "qpv")


class Base(DeclarativeBase):
    """Declarative base of Carteco's tables."""


class Sector(Base):
    """A node of the sector taxonomy (filière → activity, or a general ESS family)."""

    __tablename__ = "sectors"
    code: Mapped[str] = mapped_column(String, primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("sectors.code"))
    kind: Mapped[str] = mapped_column(String)
    label: Mapped[str] = mapped_column(Text)
    color: Mapped[str] = mapped_column(String(7))
    icon: Mapped[str] = mapped_column(String)
    sort_order: Mapped[int] = mapped_column(Integer)
    taxonomy_version: Mapped[str] = mapped_column(String)


class Territory(Base):
    """An administrative or priority area (INSEE / SIREN code) with its parents."""

    __tablename__ = "territories"
    __table_args__ = (
        UniqueConstraint("level", "code"),
        CheckConstraint(f"level IN {TERRITORY_LEVELS}", name="territories_level_check"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String)
    code: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(Text)
    region_code: Mapped[str | None] = mapped_column(String)
    departement_code: Mapped[str | None] = mapped_column(String)
    epci_code: Mapped[str | None] = mapped_column(String)
    ept_code: Mapped[str | None] = mapped_column(String)
    commune_code: Mapped[str | None] = mapped_column(String)
    population: Mapped[int | None] = mapped_column(Integer)
    old_codes: Mapped[list[str]] = mapped_column(ARRAY(String), server_default="{}")
    postcodes: Mapped[list[str]] = mapped_column(ARRAY(String), server_default="{}")
    area_m2: Mapped[float | None] = mapped_column(Float)
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", 4326, spatial_index=True))
    vintage: Mapped[str] = mapped_column(String)
    layer: Mapped[str] = mapped_column(String)


class Structure(Base):
    """An ESS establishment or place shown on the map."""

    __tablename__ = "structures"
    __table_args__ = (UniqueConstraint("source", "source_id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    siret: Mapped[str | None] = mapped_column(String(14))
    siren: Mapped[str | None] = mapped_column(String(9))
    rna: Mapped[str | None] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(Text)
    legal_category: Mapped[str | None] = mapped_column(String(4))
    legal_form: Mapped[str | None] = mapped_column(Text)
    ess_family: Mapped[str] = mapped_column(String, server_default="inconnue")
    esus: Mapped[bool] = mapped_column(Boolean, server_default="false")
    sectors: Mapped[list[str]] = mapped_column(ARRAY(String), server_default="{}")
    description: Mapped[str | None] = mapped_column(Text)
    address_line: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[str | None] = mapped_column(String(5))
    commune_name: Mapped[str | None] = mapped_column(Text)
    insee_code: Mapped[str | None] = mapped_column(String(5))
    geom: Mapped[Any] = mapped_column(Geometry("POINT", 4326, spatial_index=True))
    location_precision: Mapped[str | None] = mapped_column(String)
    location_score: Mapped[float | None] = mapped_column(Float)
    location_source: Mapped[str | None] = mapped_column(String)
    geocode_status: Mapped[str | None] = mapped_column(String)
    located_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    commune_code: Mapped[str | None] = mapped_column(String)
    arrondissement_code: Mapped[str | None] = mapped_column(String)
    epci_code: Mapped[str | None] = mapped_column(String)
    ept_code: Mapped[str | None] = mapped_column(String)
    departement_code: Mapped[str | None] = mapped_column(String)
    region_code: Mapped[str | None] = mapped_column(String)
    qpv_code: Mapped[str | None] = mapped_column(String)
    website: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String, server_default="active")
    opened_on: Mapped[date | None] = mapped_column(Date)
    closed_on: Mapped[date | None] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String)
    source_id: Mapped[str] = mapped_column(String)
    content_hash: Mapped[str] = mapped_column(String)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class StructureSource(Base):
    """A (source, source id) feeding a structure: its owner or a row merged by SIRET/RNA."""

    __tablename__ = "structure_sources"
    source: Mapped[str] = mapped_column(String, primary_key=True)
    source_id: Mapped[str] = mapped_column(String, primary_key=True)
    structure_id: Mapped[int] = mapped_column(ForeignKey("structures.id", ondelete="CASCADE"))
    content_hash: Mapped[str] = mapped_column(String)


class ImportRun(Base):
    """One `carteco import` (or POST /imports): file, checksum, counts and row-level errors."""

    __tablename__ = "import_runs"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String)
    file_name: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String)
    dry_run: Mapped[bool] = mapped_column(Boolean, server_default="false")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows_read: Mapped[int] = mapped_column(Integer, server_default="0")
    created: Mapped[int] = mapped_column(Integer, server_default="0")
    updated: Mapped[int] = mapped_column(Integer, server_default="0")
    unchanged: Mapped[int] = mapped_column(Integer, server_default="0")
    rejected: Mapped[int] = mapped_column(Integer, server_default="0")
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default="[]")
    pid: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)


class Station(Base):
    """A public-transport stop (one row per station and line)."""

    __tablename__ = "stations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[str] = mapped_column(String, unique=True)
    name: Mapped[str] = mapped_column(Text)
    mode: Mapped[str | None] = mapped_column(String)
    line: Mapped[str | None] = mapped_column(String)
    operator: Mapped[str | None] = mapped_column(String)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", 4326, spatial_index=True))
    layer: Mapped[str] = mapped_column(String)


class ReferenceLayer(Base):
    """A loaded geodata layer and the checksum it was loaded from (idempotent reloads)."""

    __tablename__ = "reference_layers"
    name: Mapped[str] = mapped_column(String, primary_key=True)
    checksum: Mapped[str] = mapped_column(String(64))
    vintage: Mapped[str] = mapped_column(String)
    features: Mapped[int] = mapped_column(Integer)
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
