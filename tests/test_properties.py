"""Property-based tests (hypothesis) of the validation core."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from carteco.identifiers import is_valid_siret, luhn_ok, siret_error
from carteco.importer.validate import cell_error, in_france

digits = st.text(alphabet="0123456789", min_size=1, max_size=30)


def _complete(prefix: str) -> str:
    """Append the Luhn check digit."""
    for d in "0123456789":
        if luhn_ok(prefix + d):
            return prefix + d
    raise AssertionError("no Luhn digit")


@given(
    st.text(alphabet="0123456789", min_size=8, max_size=8),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
)
def test_built_sirets_are_valid(siren8: str, nic4: str) -> None:
    siren = _complete(siren8)
    if siren.startswith("356000000"):
        return
    siret = _complete(siren + nic4)
    assert is_valid_siret(siret)


@given(
    st.text(alphabet="0123456789", min_size=13, max_size=13), st.integers(0, 13), st.integers(1, 9)
)
def test_one_digit_change_is_always_caught(prefix: str, pos: int, delta: int) -> None:
    siret = _complete(prefix)
    changed = siret[:pos] + str((int(siret[pos]) + delta) % 10) + siret[pos + 1 :]
    if changed.startswith("356000000") or siret.startswith("356000000"):
        return
    assert luhn_ok(siret) and not luhn_ok(changed)


@given(st.text(max_size=40))
def test_siret_error_never_raises_and_explains(value: str) -> None:
    reason = siret_error(value)
    assert reason is None or isinstance(reason, str) and reason
    if reason is None:
        assert len(value) == 14 and all(c in "0123456789" for c in value)


def test_non_ascii_digits_are_not_a_siret() -> None:
    assert siret_error("٤١٠٧١٧٧١٤٠٠٠٣٥") == "un SIRET a 14 chiffres"


@given(st.text(max_size=200))
@settings(max_examples=300)
def test_cell_error_total(value: str) -> None:
    reason = cell_error(value)
    if value.lstrip().startswith(("=", "@")):
        assert reason is not None


@given(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True)
)
def test_in_france_total(lon: float, lat: float) -> None:
    assert in_france(lon, lat) in (True, False)


# -- the address normaliser -----------------------------------------------------------------

from carteco.geocoding.normalize import commune_key, parse, street_key  # noqa: E402

address_text = st.text(
    alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyzéèàçôÉÈ ABCDEFGRST0123456789,.-'/")),
    max_size=60,
)


@given(address_text)
@example("A/R")  # found by hypothesis: the street type was expanded only in first position
@settings(max_examples=400)
def test_street_key_is_idempotent_and_folded(text: str) -> None:
    key = street_key(text)
    assert street_key(key) == key
    assert key == key.lower() and not any(c in key for c in "éèàçô")


@given(address_text, st.one_of(st.none(), st.text("0123456789", min_size=5, max_size=5)))
@settings(max_examples=400)
def test_parse_never_fails_and_keeps_the_number(text: str, postcode: str | None) -> None:
    parsed = parse(text, postcode=postcode)
    if parsed.number is not None:
        assert str(parsed.number) in text
    assert commune_key(text) == commune_key(commune_key(text))


# -- the CQL2 compiler --------------------------------------------------------------------------

from carteco.collections import get_collection  # noqa: E402
from carteco.filters import FilterError, compile_filter  # noqa: E402

STRUCTURES = get_collection("structures")


@given(st.text(max_size=120))
@settings(max_examples=400)
def test_cql2_text_either_compiles_or_is_a_filter_error(text: str) -> None:
    try:
        sql, binds = compile_filter(STRUCTURES, {"filter": text})
    except FilterError:
        return
    assert isinstance(sql, str) and isinstance(binds, dict)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
@settings(max_examples=400)
def test_cql2_literals_are_always_bound(value: str) -> None:
    quoted = value.replace("'", "''")
    try:
        sql, binds = compile_filter(STRUCTURES, {"filter": f"name = '{quoted}'"})
    except FilterError:
        return
    assert value in binds.values()
    if len(value) > 3:
        assert value not in sql  # user text never reaches the SQL string
