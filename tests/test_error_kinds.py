"""Domain errors have one base and a kind; the API maps kinds to statuses in one place."""

from __future__ import annotations

import pytest

from api.errors import KIND_STATUS
from carteco.auth import AuthError
from carteco.backup import BackupError
from carteco.collections import COLLECTIONS
from carteco.db import DatabaseError
from carteco.embedded import EmbeddedError
from carteco.errors import KINDS, CartecoError
from carteco.filters import FilterError
from carteco.geocoding.backends import BanBackendError
from carteco.geocoding.csvfile import CsvInputError
from carteco.geocoding.reference import AddressFileError
from carteco.importer.errors import ImportFileError
from carteco.territory_levels import LEVELS
from geodata.loader import ChecksumError
from tests.conftest import assert_problem
from tiles.filters import TerritoryParamError
from tiles.layers import LAYERS
from tiles.mvt import TileRangeError

CORE_ERRORS = (
    AuthError,
    BackupError,
    DatabaseError,
    EmbeddedError,
    FilterError,
    BanBackendError,
    CsvInputError,
    AddressFileError,
    ImportFileError,
    ChecksumError,
    TerritoryParamError,
    TileRangeError,
)


@pytest.mark.parametrize("cls", CORE_ERRORS, ids=lambda c: c.__name__)
def test_every_core_error_has_a_mapped_kind(cls: type[CartecoError]) -> None:
    assert issubclass(cls, CartecoError)
    assert cls.kind in KINDS and cls.kind in KIND_STATUS


def test_every_kind_has_a_status() -> None:
    assert set(KIND_STATUS) == set(KINDS)
    with pytest.raises(ValueError):
        CartecoError("x", kind="nonsense")


def test_auth_error_carries_a_kind_not_a_status() -> None:
    assert AuthError("unauthorized", "jeton inconnu").status == 401
    assert AuthError("forbidden", "portée").status == 403
    assert isinstance(FilterError("bbox", "invalide"), ValueError)  # callers catching ValueError


def test_tile_filter_400_lists_the_parameter(client) -> None:
    url = "/collections/structures/tiles/WebMercatorQuad/8/88/129"
    body = assert_problem(client.get(url + "?territoire=pays:FR"), 400)
    assert body["errors"][0]["parameter"] == "territoire", body
    body = assert_problem(client.get(url + "?departement=abc"), 400)
    assert body["errors"][0]["parameter"] == "departement", body
    assert_problem(client.get("/collections/structures/tiles/WebMercatorQuad/30/0/0"), 404)


def test_territory_layers_and_collections_come_from_the_levels() -> None:
    territory_layers = [(t.id, t.level) for t in LAYERS.values() if t.kind == "territory"]
    assert territory_layers == [(lv.collection, lv.name) for lv in LEVELS]
    collections = [(c.id, c.level) for c in COLLECTIONS.values() if c.level]
    assert collections == territory_layers
