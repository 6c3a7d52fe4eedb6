"""Property-based tests (hypothesis) of the validation core."""

from __future__ import annotations

from hypothesis import given, settings
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
