"""SIRET / SIREN checks (Luhn, La Poste rule) and ESS family classification on real data."""

import csv
from pathlib import Path

import pytest

from carteco.demo import DEMO_SOURCES
from carteco.families import family_from_category, family_from_label
from carteco.identifiers import is_valid_siret, rna_error, siren_error, siret_error

FIXTURES = Path(__file__).parent / "fixtures"


def _demo_sirets() -> list[str]:
    siae = next(d for d in DEMO_SOURCES if d.source == "siae-2019")
    with siae.path.open(encoding="utf-8") as fh:
        return [r["SIRET"] for r in csv.DictReader(fh)]


def test_real_sirets_pass() -> None:
    sirets = _demo_sirets()
    assert len(sirets) == 409
    assert all(is_valid_siret(s) for s in sirets)
    with (FIXTURES / "ess" / "ess_numerique_sirene_2026.csv").open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["siret_siege"]]
    assert len(rows) > 3000
    assert all(is_valid_siret(r["siret_siege"]) for r in rows)
    assert all(siren_error(r["siren"]) is None for r in rows)


def test_corrupted_sirets_fail() -> None:
    # Changing any single digit breaks the Luhn key (the check catches every one-digit typo).
    for s in _demo_sirets()[:50]:
        for pos in (0, 5, 13):
            d = (int(s[pos]) + 1) % 10
            bad = s[:pos] + str(d) + s[pos + 1 :]
            assert not is_valid_siret(bad), bad
        # Swapping two different adjacent digits is caught too (except 0↔9, a known Luhn gap).
        if s[3] != s[4] and {s[3], s[4]} != {"0", "9"}:
            assert not is_valid_siret(s[:3] + s[4] + s[3] + s[5:])
    assert siret_error("1234") == "un SIRET a 14 chiffres"
    assert siret_error("4107177140003A") == "un SIRET a 14 chiffres"


def test_la_poste_rule() -> None:
    # La Poste's SIRETs do not pass Luhn; their digit sum is a multiple of 5.
    assert is_valid_siret("35600000000001")  # digit sum 15
    assert not is_valid_siret("35600000000002")
    assert siren_error("356000000") is None


def test_rna() -> None:
    assert rna_error("W751234567") is None
    assert rna_error("W75123456") is not None


# Real RNA numbers (from the SIRENE sample in tests/fixtures/ess) that the former rule
# `W[0-9A-Z][0-9]{8}` refused: the prefecture code of Corsica and of overseas is not numeric.
REAL_NON_NUMERIC_RNA = (
    "W2A1000249",  # Corse-du-Sud
    "W2A1007332",
    "W2B2007117",  # Haute-Corse
    "W2B5000532",
    "W9R1001315",  # La Réunion
    "W9R4009434",
    "W9G1008870",
    "W9M1006623",
    "W9C1003412",
    "W9T1008644",
)


@pytest.mark.parametrize("rna", REAL_NON_NUMERIC_RNA)
def test_rna_accepts_corsica_and_overseas(rna: str) -> None:
    assert rna_error(rna) is None
    assert rna_error(rna.lower()) is None
    assert rna_error("W971234567") is None  # overseas with a numeric code


@pytest.mark.parametrize(
    "garbage",
    ["W2A100024", "W2A10002490", "X2A1000249", "W2A10002A9", "WASSERMANN", "W", "", "W2A1-00249"],
)
def test_rna_still_refuses_garbage(garbage: str) -> None:
    assert rna_error(garbage) is not None


def test_every_rna_of_the_sirene_sample_is_accepted() -> None:
    with (FIXTURES / "ess" / "ess_numerique_sirene_2026.csv").open(encoding="utf-8") as fh:
        numbers = [r["rna"] for r in csv.DictReader(fh) if r["rna"]]
    assert len(numbers) == 1739
    assert [n for n in numbers if rna_error(n)] == []


def test_family_agreement_with_sirene_sample(capsys: pytest.CaptureFixture[str]) -> None:
    with (FIXTURES / "ess" / "ess_numerique_sirene_2026.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3667
    labelled = [r for r in rows if r["famille_ess"]]
    agree = sum(
        1
        for r in labelled
        if family_from_category(r["categorie_juridique"], r["flag_ess_sirene"] == "True")
        == r["famille_ess"]
    )
    rate = agree / len(labelled)
    # Over all rows, an empty famille_ess must not be one of the three families it labels.
    overall = sum(
        1
        for r in rows
        if (fam := family_from_category(r["categorie_juridique"], r["flag_ess_sirene"] == "True"))
        == r["famille_ess"]
        or (not r["famille_ess"] and fam not in ("association", "cooperative", "fondation"))
    ) / len(rows)
    with capsys.disabled():
        print(
            f"\nESS family vs famille_ess: {agree}/{len(labelled)} labelled rows agree "
            f"({rate:.1%}); all rows {overall:.1%}"
        )
    # 12 "fondation" rows are category 9900 (other private bodies, e.g. endowment funds):
    # the INSEE code alone cannot call them foundations, so agreement is below 100 %.
    assert rate >= 0.99
    assert overall >= 0.95


def test_family_from_label() -> None:
    assert family_from_label("Association déclarée") == "association"
    assert family_from_label("SARL coopérative ouvrière de production (SCOP)") == "cooperative"
    assert family_from_label("Mutuelle") == "mutuelle"
    assert family_from_label("SARL") == "inconnue"
