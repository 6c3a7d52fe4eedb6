"""An evaluation corpus built from real address shapes: a reference with confusers, and noisy
queries of many kinds, split into a tuning part and a held-out part (never used for tuning).

The reference is the médiation numérique addresses (tests/fixtures/geocoding, BAN format) plus,
for each address, the confusers a real BAN has around it: neighbouring numbers a few dozen
metres away, the same name with another street type elsewhere in the commune, and the same
street in another commune of the département. Complements are real `COMPLEMENT ADRESSE` /
`NOM_RUE` values of the GEIQ 2019 and SIAE 2019 files (shared data `ess/`, Licence Ouverte).
"""

from __future__ import annotations

import csv
import math
import random
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDIATION = ROOT / "tests" / "fixtures" / "geocoding" / "adresses-mediation-cnfs-2022.csv"
OLD_IDF = ROOT / "carteco" / "geocoding" / "data" / "anciennes_communes_idf.csv"

# Real complements (GEIQ 2019 `COMPLEMENT ADRESSE`, SIAE 2019 `NOM_RUE`), and the usual
# building parts of registry addresses.
COMPLEMENTS = (
    "Bât 55 - 3", "Entrée B", "Bat 12", "Espace Wagner, bat B", "Les Fenières - Bât B",
    "Immeuble MARIDOR", "Immeuble Consulaire", "Maison du BTP", "Espace Saint Roch",
    "Parc Solaris - Bâtiment Arkam", "Bâtiment Euclide", "ZI Cantaranne", "ZI Les Molières",
    "ZAC de la Garenne", "ZA La Galive", "Centre de Gros Larrieu", "Immeuble Penfret",
    "Bâtiment B, 2e étage", "Bât. C", "2ème étage", "Escalier 3", "Appt 12", "Porte 4",
    "Résidence Les Lilas", "Résidence du Parc, Bât A", "Centre commercial Les Arcades",
    "Chez Mme Martin", "c/o Mairie", "Lot 4", "RDC", "Etage 1 porte gauche", "Esc. B",
    "Appartement 23, 4e étage", "Immeuble Le Forum", "ZA de Bel Orme",
)  # fmt: skip
TYPE_ABBREV = {
    "rue": ("R", "R.", "Rue"), "avenue": ("AV", "Av.", "AVE", "Aveune", "Avenu"),
    "boulevard": ("BD", "Bld", "BLVD", "Boulvard", "Bd."), "place": ("PL", "Pl."),
    "chemin": ("CHE", "Chem", "CHEM", "Chmin"), "impasse": ("IMP", "Imp.", "Impase"),
    "allee": ("ALL", "All.", "Alle"), "square": ("SQ",), "faubourg": ("FG", "Fbg"),
    "route": ("RTE", "Rte"), "cours": ("CRS",), "quai": ("QU", "Qu."),
    "passage": ("PASS", "Pass."), "esplanade": ("ESPL",),
}  # fmt: skip
OTHER_TYPES = ("Rue", "Avenue", "Impasse", "Allée", "Place", "Chemin", "Boulevard")
KINDS = (
    "exact", "lower_no_accents", "upper", "abbreviations", "type_typo", "articles_dropped",
    "no_postcode", "postcode_only", "wrong_postcode", "typo1", "typo2", "commune_typo",
    "bis_ter", "range", "comma_after_number", "complement_before", "complement_after",
    "bp_cs_cedex", "sirene", "commune_first", "commune_short", "old_commune",
)  # fmt: skip


def strip_accents(text: str) -> str:
    """Text without accents."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Addr:
    """One reference address."""

    id: str
    number: str
    suffix: str
    street: str
    postcode: str
    insee: str
    commune: str
    lon: float
    lat: float
    old_commune: str = ""


def _offset(lon: float, lat: float, metres: float, rng: random.Random) -> tuple[float, float]:
    b = rng.uniform(0, 2 * math.pi)
    dy = metres * math.cos(b) / 111320.0
    dx = metres * math.sin(b) / (111320.0 * math.cos(math.radians(lat)))
    return round(lon + dx, 6), round(lat + dy, 6)


def _other_type(street: str, rng: random.Random) -> str:
    words = street.split()
    rest = words[1:] if words and strip_accents(words[0]).lower() in _TYPES else words
    first = strip_accents(words[0]).lower()
    choices = [t for t in OTHER_TYPES if strip_accents(t).lower() != first]
    return " ".join([rng.choice(choices), *rest])


_TYPES = {strip_accents(t).lower() for t in OTHER_TYPES} | set(TYPE_ABBREV) | {"r", "av", "bd"}


def originals() -> list[Addr]:
    """The médiation numérique addresses with a number (the truths of the queries)."""
    old_of: dict[str, list[str]] = {}
    with OLD_IDF.open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            old_of.setdefault(r["code_insee_actuel"], []).append(r["nom"])
    out = []
    with MEDIATION.open(encoding="utf-8") as fh:
        for r in csv.DictReader(fh, delimiter=";"):
            if not r["numero"] or r["numero"] == "99999":
                continue
            olds = sorted(old_of.get(r["code_insee"], []))
            old = olds[zlib.crc32(r["id"].encode()) % len(olds)] if olds else ""
            out.append(
                Addr(r["id"], r["numero"], r["rep"], r["nom_voie"], r["code_postal"],
                     r["code_insee"], r["nom_commune"], float(r["lon"]), float(r["lat"]), old)
            )  # fmt: skip
    return out


def write_reference(path: Path, seed: int = 1) -> int:
    """Write the reference with its confusers as a BAN CSV; return its number of rows."""
    rng = random.Random(seed)
    base = originals()
    by_dep: dict[str, list[Addr]] = {}
    for a in base:
        by_dep.setdefault(a.insee[:2], []).append(a)
    rows: dict[tuple[str, str, str, str], tuple[float, float, Addr, str]] = {}

    def put(a: Addr, number: str, street: str, lon: float, lat: float, tag: str) -> None:
        key = (a.insee, strip_accents(street).lower(), number, a.suffix)
        rows.setdefault(
            key,
            (
                lon,
                lat,
                Addr(
                    a.id,
                    number,
                    a.suffix,
                    street,
                    a.postcode,
                    a.insee,
                    a.commune,
                    lon,
                    lat,
                    a.old_commune,
                ),
                tag,
            ),
        )

    for a in base:
        put(a, a.number, a.street, a.lon, a.lat, "orig")
    for a in base:
        n = int(a.number)
        for d in (-2, 2, 1, 4):
            if n + d > 0:
                lon, lat = _offset(a.lon, a.lat, rng.uniform(60, 140), rng)
                put(a, str(n + d), a.street, lon, lat, "nb")
        other = _other_type(a.street, rng)
        lon, lat = _offset(a.lon, a.lat, rng.uniform(400, 2500), rng)
        for d in (0, 2, -2):
            if n + d > 0:
                put(a, str(n + d), other, *_offset(lon, lat, 15 * abs(d), rng), "type")
        peers = [p for p in by_dep.get(a.insee[:2], []) if p.insee != a.insee]
        if peers:
            p = rng.choice(peers)
            twin = Addr(a.id, a.number, "", a.street, p.postcode, p.insee, p.commune, 0, 0)
            for d in (0, 2):
                lon, lat = _offset(p.lon, p.lat, rng.uniform(100, 900), rng)
                put(twin, str(n + d), a.street, lon, lat, "twin")
    cols = ["id", "id_fantoir", "numero", "rep", "nom_voie", "code_postal", "code_insee",
            "nom_commune", "code_insee_ancienne_commune", "nom_ancienne_commune", "x", "y",
            "lon", "lat", "type_position", "alias", "nom_ld", "libelle_acheminement",
            "nom_afnor", "source_position", "source_nom_voie", "certification_commune",
            "cad_parcelles"]  # fmt: skip
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(cols)
        for k, (lon, lat, a, tag) in enumerate(sorted(rows.values(), key=lambda v: v[2].id)):
            w.writerow([f"{tag}-{k}", "", a.number, a.suffix, a.street, a.postcode, a.insee,
                        a.commune, "", "", "", "", lon, lat, "entrée", "", "", "", "", "", "",
                        "", ""])  # fmt: skip
    return len(rows)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("swap", "drop", "double", "replace"))
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "double":
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice("aeioustrn") + word[i + 1 :]


def _typos(text: str, n: int, rng: random.Random) -> str:
    words = text.split()
    long_ = [i for i, w in enumerate(words) if len(w) >= 5] or [len(words) - 1]
    for _ in range(n):
        i = rng.choice(long_)
        words[i] = _typo(words[i], rng)
    return " ".join(words)


_SHORT_SEPARATORS = ("-sur-", "-en-", "-lès-", "-les-", "-le-", "-la-", "-de-", "-d'")


def noisy(a: Addr, kind: str, rng: random.Random) -> str | None:
    """The address written with one kind of real-world noise (None: not applicable)."""
    num = a.number + (" " + a.suffix if a.suffix else "")
    city = f"{a.postcode} {a.commune}"
    clean = f"{num} {a.street}, {city}"
    words = a.street.split()
    if kind == "exact":
        return clean
    if kind == "lower_no_accents":
        return strip_accents(clean).lower().replace(",", "")
    if kind == "upper":
        return clean.upper()
    if kind in ("abbreviations", "type_typo"):
        t = strip_accents(words[0]).lower()
        if t not in TYPE_ABBREV:
            return None
        forms = TYPE_ABBREV[t]
        pick = rng.choice(
            [
                f
                for f in forms
                if (f.lower() != t)
                and ((kind == "type_typo") == (f[0].islower() and f.isalpha() and len(f) > 4))
            ]
            or forms
        )
        rest = [{"Saint": "St", "Sainte": "Ste", "Général": "Gal", "Docteur": "Dr"}.get(w, w)
                for w in words[1:]]  # fmt: skip
        return f"{num} {pick} {' '.join(rest)} {city}"
    if kind == "articles_dropped":
        kept = [w for w in words if strip_accents(w).lower() not in
                ("de", "du", "des", "la", "le", "les")]  # fmt: skip
        return f"{num} {' '.join(kept)} {city}".replace("d'", "").replace("l'", "")
    if kind == "no_postcode":
        return f"{num} {a.street} {a.commune}"
    if kind == "postcode_only":
        return f"{num} {a.street} {a.postcode}"
    if kind == "wrong_postcode":
        pc = a.postcode[:2] + f"{(int(a.postcode[2:]) + rng.choice((10, 20, 100))) % 1000:03d}"
        return f"{num} {a.street}, {pc} {a.commune}"
    if kind == "typo1":
        return f"{num} {_typos(a.street, 1, rng)}, {city}"
    if kind == "typo2":
        return f"{num} {_typos(a.street, 2, rng)}, {city}"
    if kind == "commune_typo":
        return f"{num} {a.street}, {a.postcode} {_typos(a.commune, 1, rng)}"
    if kind == "bis_ter":
        if not a.suffix:
            return None
        s = rng.choice((a.suffix.upper(), a.suffix.lower(), " " + a.suffix.upper()))
        return f"{a.number}{s} {a.street} {city}"
    if kind == "range":
        n = int(a.number)
        if a.suffix:
            return None
        sep = rng.choice(("-", "/", " à ", " et ", "-"))
        return f"{n}{sep}{n + 2} {a.street} {city}"
    if kind == "comma_after_number":
        return f"{num}, {a.street}, {city}"
    if kind == "complement_before":
        return f"{rng.choice(COMPLEMENTS)}, {num} {a.street}, {city}"
    if kind == "complement_after":
        return f"{num} {a.street}, {rng.choice(COMPLEMENTS)}, {city}"
    if kind == "bp_cs_cedex":
        box = rng.choice((f"BP {rng.randint(1, 99999)}", f"CS {rng.randint(10000, 99999)}",
                          f"TSA {rng.randint(10000, 99999)}", ""))  # fmt: skip
        cedex = rng.choice(("CEDEX", f"CEDEX {rng.randint(1, 20)}", "Cedex"))
        return f"{num} {a.street} {box} {a.postcode} {a.commune} {cedex}".replace("  ", " ")
    if kind == "sirene":
        # complementAdresse numeroVoie indiceRepetition typeVoie libelleVoie
        # distributionSpeciale codePostal libelleCommune (SIRENE order, upper case).
        t = strip_accents(words[0]).lower()
        typ = TYPE_ABBREV[t][0] if t in TYPE_ABBREV else words[0]
        rest = " ".join(words[1:]) if t in TYPE_ABBREV else " ".join(words[1:])
        comp = rng.choice(("", "", rng.choice(COMPLEMENTS)))
        dist = rng.choice(("", "", f"BP {rng.randint(1, 999)}"))
        sfx = a.suffix[:1].upper() if a.suffix else ""
        parts = [comp, a.number, sfx, typ, rest, dist, a.postcode, a.commune]
        return strip_accents(" ".join(p for p in parts if p)).upper()
    if kind == "commune_first":
        return f"{a.postcode} {a.commune} - {num} {a.street}"
    if kind == "commune_short":
        low = a.commune.lower()
        for sep in _SHORT_SEPARATORS:
            k = low.find(sep)
            if k > 2:
                return f"{num} {a.street} {a.commune[:k]}"
        return None
    if kind == "old_commune":
        if not a.old_commune:
            return None
        return f"{num} {a.street}, {a.old_commune}"
    raise ValueError(kind)


def split_of(a: Addr) -> str:
    """'tuning' or 'heldout', fixed per address (a third held out)."""
    return "heldout" if zlib.crc32(a.id.encode()) % 3 == 0 else "tuning"


def corpus(part: str, per_kind: int, seed: int = 42) -> Iterator[tuple[str, str, Addr]]:
    """(kind, noisy text, truth) triples of one part, `per_kind` per kind when possible."""
    rng = random.Random(f"{seed}-{part}")
    pool = [a for a in originals() if split_of(a) == part]
    for kind in KINDS:
        made = tries = 0
        while made < per_kind and tries < per_kind * 40:
            tries += 1
            a = rng.choice(pool)
            q = noisy(a, kind, rng)
            if q is not None:
                made += 1
                yield kind, q, a
