"""The collection registry: every table the features API serves, with its allow-listed columns.

Nothing outside this module names a table or a column of a served collection: the filter
compiler, the items query and the exports take identifiers from here only (through
``carteco.db.quote_ident``), so a client can never reach a column that is not listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from carteco.db import quote_ident
from carteco.history import AsOfError, structures_source
from carteco.models import PUBLIC_STATUSES
from carteco.territory_levels import LEVEL_COLUMNS, LEVELS

# JSON Schema types of the queryables (OGC API Features Part 3).
STRING, INTEGER, NUMBER, BOOLEAN, DATE, DATETIME, ARRAY = (
    "string",
    "integer",
    "number",
    "boolean",
    "date",
    "date-time",
    "array",
)


@dataclass(frozen=True)
class Column:
    """One public property of a collection: its name is also its SQL column."""

    name: str
    type: str
    title: str
    queryable: bool = True
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Collection:
    """A served collection: a table (optionally restricted to one territory level)."""

    id: str
    title: str
    description: str
    table: str
    id_column: str
    id_type: str  # "integer" or "string"
    geometry_type: str
    columns: tuple[Column, ...]
    level: str | None = None  # territories table: the level this collection holds
    datetime_column: str | None = None
    # With an end column, `datetime` selects the rows whose [start, end] interval meets it.
    datetime_end_column: str | None = None
    simple_filters: bool = False  # sector / family / commune / ... / q (structures only)
    extra_columns: tuple[str, ...] = field(default_factory=tuple)
    # Rows of the table that are not served at all (structures: the non-public statuses).
    public_statuses: tuple[str, ...] | None = None
    # Whether past states can be read (`as_of`, structures only), and the instant read.
    history: bool = False
    as_of: datetime | None = None

    def at(self, instant: datetime | None) -> Collection:
        """This collection as it stood just before `instant` (itself when None)."""
        if instant is None:
            return self
        if not self.history:
            raise AsOfError(f"la collection {self.id} n'a pas d'historique")
        return replace(self, as_of=instant)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the public properties."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column | None:
        """The column called `name`, or None."""
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def allowed(self) -> set[str]:
        """Every identifier the SQL of this collection may use."""
        return {
            self.table,
            self.id_column,
            "geom",
            *self.column_names,
            *self.extra_columns,
            *(["level"] if self.level else []),
        }

    def q(self, name: str) -> str:
        """`t."name"`: a column of this collection, quoted through the allow-list."""
        return "t." + quote_ident(name, self.allowed())

    def from_sql(self) -> str:
        """`FROM <table> t WHERE <base condition>` with `:coll_level` bound when needed."""
        table = quote_ident(self.table, self.allowed())
        if self.as_of is not None:
            # The table rebuilt from its versions (carteco/history.py), bound to :coll_as_of.
            table = structures_source("coll_as_of")
        if self.level:
            return f"FROM {table} t WHERE t.level = :coll_level"
        if self.public_statuses:
            # Every read of the collection (items, one item, exports, counts) goes through here:
            # a pending or hidden structure is never served. The statuses are fixed words.
            words = ", ".join(repr(s) for s in self.public_statuses)
            return f"FROM {table} t WHERE t.status IN ({words})"
        return f"FROM {table} t WHERE TRUE"

    def base_params(self) -> dict[str, object]:
        """Bind parameters of :meth:`from_sql`."""
        params: dict[str, object] = {"coll_level": self.level} if self.level else {}
        if self.as_of is not None:
            params["coll_as_of"] = self.as_of
        return params


STRUCTURE_COLUMNS = (
    Column("name", STRING, "Nom"),
    Column("siret", STRING, "SIRET"),
    Column("siren", STRING, "SIREN"),
    Column("rna", STRING, "Numéro RNA"),
    Column("legal_category", STRING, "Catégorie juridique (INSEE)"),
    Column("legal_form", STRING, "Forme juridique"),
    Column(
        "ess_family",
        STRING,
        "Famille de l'ESS",
        enum=(
            "association",
            "cooperative",
            "mutuelle",
            "fondation",
            "societe_commerciale_ess",
            "inconnue",
        ),
    ),
    Column("esus", BOOLEAN, "Agrément ESUS"),
    Column("sectors", ARRAY, "Secteurs d'activité"),
    Column("description", STRING, "Description"),
    Column("address_line", STRING, "Adresse"),
    Column("postcode", STRING, "Code postal"),
    Column("commune_name", STRING, "Commune (libellé source)"),
    Column("commune_code", STRING, "Code INSEE de la commune"),
    Column("arrondissement_code", STRING, "Code de l'arrondissement municipal"),
    Column("epci_code", STRING, "SIREN de l'EPCI"),
    Column("ept_code", STRING, "Code de l'EPT"),
    Column("departement_code", STRING, "Code du département"),
    Column("region_code", STRING, "Code de la région"),
    Column("qpv_code", STRING, "Code du QPV"),
    Column(
        "location_precision",
        STRING,
        "Précision de la localisation",
        enum=("provided", "housenumber", "street", "locality", "municipality", "manual"),
    ),
    Column("website", STRING, "Site web"),
    Column("status", STRING, "Statut", enum=("active", "closed")),
    Column("opened_on", DATE, "Date d'ouverture"),
    Column("closed_on", DATE, "Date de fermeture"),
    Column("source", STRING, "Source"),
    Column("version", INTEGER, "Version de la fiche"),
    Column("updated_at", DATETIME, "Dernière modification"),
)

TERRITORY_COLUMNS = (
    Column("code", STRING, "Code officiel"),
    Column("name", STRING, "Nom"),
    Column("region_code", STRING, "Code de la région"),
    Column("departement_code", STRING, "Code du département"),
    Column("epci_code", STRING, "SIREN de l'EPCI"),
    Column("ept_code", STRING, "Code de l'EPT"),
    Column("commune_code", STRING, "Code de la commune"),
    Column("population", INTEGER, "Population municipale"),
    Column("area_m2", NUMBER, "Surface (m²)"),
    Column("vintage", STRING, "Millésime"),
)

STATION_COLUMNS = (
    Column("source_id", STRING, "Identifiant source"),
    Column("name", STRING, "Nom"),
    Column("mode", STRING, "Mode"),
    Column("line", STRING, "Ligne"),
    Column("operator", STRING, "Exploitant"),
)


def _territory(cid: str, level: str, title: str, description: str) -> Collection:
    return Collection(
        id=cid,
        title=title,
        description=description,
        table="territories",
        id_column="code",
        id_type="string",
        geometry_type="MultiPolygon",
        columns=TERRITORY_COLUMNS,
        level=level,
    )


COLLECTIONS: dict[str, Collection] = {
    c.id: c
    for c in (
        Collection(
            id="structures",
            title="Structures de l'ESS",
            description=(
                "Associations, coopératives, mutuelles, fondations et entreprises de l'ESS, "
                "avec leurs secteurs, leur famille, leurs territoires et la précision de leur "
                "localisation."
            ),
            table="structures",
            id_column="id",
            id_type="integer",
            geometry_type="Point",
            columns=STRUCTURE_COLUMNS,
            # OGC `datetime`: the structure's life [opened_on, closed_on] (carteco/filters.py).
            datetime_column="opened_on",
            datetime_end_column="closed_on",
            simple_filters=True,
            history=True,
            # extra and source_id: read by the GoGoCarto export only (carteco/gogocarto.py).
            extra_columns=("search", "geocode_status", "extra", "source_id", "insee_code"),
            public_statuses=PUBLIC_STATUSES,
        ),
        # One collection per territory level (carteco/territory_levels.py).
        *(_territory(lv.collection, lv.name, lv.title, lv.description) for lv in LEVELS),
        Collection(
            id="stations",
            title="Gares et stations",
            description="Gares et stations de transport en commun d'Île-de-France.",
            table="stations",
            id_column="id",
            id_type="integer",
            geometry_type="Point",
            columns=STATION_COLUMNS,
        ),
    )
}

# Territory level (as in territories.level) → the structures column that holds its code.
LEVEL_STRUCTURE_COLUMN = LEVEL_COLUMNS


def get_collection(cid: str) -> Collection | None:
    """The collection called `cid`, or None."""
    return COLLECTIONS.get(cid)
