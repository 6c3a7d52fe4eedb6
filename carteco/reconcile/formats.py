"""The official files as published: SIRENE stock (INSEE) and RNA "waldec" (Intérieur).

Headers and order as in the files themselves: `StockEtablissement_utf8.csv` and
`StockUniteLegale_utf8.csv` (comma, UTF-8, header row; the NAF 2025 columns appear in 2025
files, older stocks stop before them) and the per-département `rna_waldec_AAAAMMJJ_dpt_XX.csv`
(semicolon, UTF-8 in recent exports, ISO-8859-1 in older ones). Only a few columns are
required; a file is recognised by them, whatever else it carries.

Files are read as a stream (plain or zipped, as data.gouv.fr publishes them), never whole: the
SIRENE stock holds about 40 million establishments.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from carteco.importer.errors import ImportFileError

ETABLISSEMENT_COLUMNS = (
    "siren",
    "nic",
    "siret",
    "statutDiffusionEtablissement",
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "anneeEffectifsEtablissement",
    "activitePrincipaleRegistreMetiersEtablissement",
    "dateDernierTraitementEtablissement",
    "etablissementSiege",
    "nombrePeriodesEtablissement",
    "complementAdresseEtablissement",
    "numeroVoieEtablissement",
    "indiceRepetitionEtablissement",
    "dernierNumeroVoieEtablissement",
    "indiceRepetitionDernierNumeroVoieEtablissement",
    "typeVoieEtablissement",
    "libelleVoieEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
    "libelleCommuneEtrangerEtablissement",
    "distributionSpecialeEtablissement",
    "codeCommuneEtablissement",
    "codeCedexEtablissement",
    "libelleCedexEtablissement",
    "codePaysEtrangerEtablissement",
    "libellePaysEtrangerEtablissement",
    "identifiantAdresseEtablissement",
    "coordonneeLambertAbscisseEtablissement",
    "coordonneeLambertOrdonneeEtablissement",
    "complementAdresse2Etablissement",
    "numeroVoie2Etablissement",
    "indiceRepetition2Etablissement",
    "typeVoie2Etablissement",
    "libelleVoie2Etablissement",
    "codePostal2Etablissement",
    "libelleCommune2Etablissement",
    "libelleCommuneEtranger2Etablissement",
    "distributionSpeciale2Etablissement",
    "codeCommune2Etablissement",
    "codeCedex2Etablissement",
    "libelleCedex2Etablissement",
    "codePaysEtranger2Etablissement",
    "libellePaysEtranger2Etablissement",
    "dateDebut",
    "etatAdministratifEtablissement",
    "enseigne1Etablissement",
    "enseigne2Etablissement",
    "enseigne3Etablissement",
    "denominationUsuelleEtablissement",
    "activitePrincipaleEtablissement",
    "nomenclatureActivitePrincipaleEtablissement",
    "caractereEmployeurEtablissement",
    "activitePrincipaleNAF25Etablissement",
)

UNITE_LEGALE_COLUMNS = (
    "siren",
    "statutDiffusionUniteLegale",
    "unitePurgeeUniteLegale",
    "dateCreationUniteLegale",
    "sigleUniteLegale",
    "sexeUniteLegale",
    "prenom1UniteLegale",
    "prenom2UniteLegale",
    "prenom3UniteLegale",
    "prenom4UniteLegale",
    "prenomUsuelUniteLegale",
    "pseudonymeUniteLegale",
    "identifiantAssociationUniteLegale",
    "trancheEffectifsUniteLegale",
    "anneeEffectifsUniteLegale",
    "dateDernierTraitementUniteLegale",
    "nombrePeriodesUniteLegale",
    "categorieEntreprise",
    "anneeCategorieEntreprise",
    "dateDebut",
    "etatAdministratifUniteLegale",
    "nomUniteLegale",
    "nomUsageUniteLegale",
    "denominationUniteLegale",
    "denominationUsuelle1UniteLegale",
    "denominationUsuelle2UniteLegale",
    "denominationUsuelle3UniteLegale",
    "categorieJuridiqueUniteLegale",
    "activitePrincipaleUniteLegale",
    "nomenclatureActivitePrincipaleUniteLegale",
    "nicSiegeUniteLegale",
    "economieSocialeSolidaireUniteLegale",
    "societeMissionUniteLegale",
    "caractereEmployeurUniteLegale",
    "activitePrincipaleNAF25UniteLegale",
)

WALDEC_COLUMNS = (
    "id",
    "id_ex",
    "siret",
    "rup_mi",
    "gestion",
    "date_creat",
    "date_decla",
    "date_publi",
    "date_disso",
    "nature",
    "groupement",
    "titre",
    "titre_court",
    "objet",
    "objet_social1",
    "objet_social2",
    "adrs_complement",
    "adrs_numvoie",
    "adrs_repetition",
    "adrs_typevoie",
    "adrs_libvoie",
    "adrs_distrib",
    "adrs_codeinsee",
    "adrs_codepostal",
    "adrs_libcommune",
    "adrg_declarant",
    "adrg_complemid",
    "adrg_complemgeo",
    "adrg_libvoie",
    "adrg_distrib",
    "adrg_codepostal",
    "adrg_achemine",
    "adrg_pays",
    "dir_civilite",
    "siteweb",
    "publiweb",
    "observation",
    "position",
    "maj_time",
)


@dataclass(frozen=True)
class FileFormat:
    """One official layout: its name, key column and the columns reconciliation reads."""

    kind: str
    label: str
    key: str
    needed: tuple[str, ...]


ETABLISSEMENT = FileFormat(
    "sirene_etablissement",
    "SIRENE StockEtablissement",
    "siret",
    (
        "siret",
        "dateCreationEtablissement",
        "trancheEffectifsEtablissement",
        "complementAdresseEtablissement",
        "numeroVoieEtablissement",
        "indiceRepetitionEtablissement",
        "typeVoieEtablissement",
        "libelleVoieEtablissement",
        "codePostalEtablissement",
        "libelleCommuneEtablissement",
        "codeCommuneEtablissement",
        "codePaysEtrangerEtablissement",
        "dateDebut",
        "etatAdministratifEtablissement",
    ),
)
UNITE_LEGALE = FileFormat(
    "sirene_unite_legale",
    "SIRENE StockUniteLegale",
    "siren",
    (
        "siren",
        "dateCreationUniteLegale",
        "dateDebut",
        "etatAdministratifUniteLegale",
        "categorieJuridiqueUniteLegale",
        "economieSocialeSolidaireUniteLegale",
        "nicSiegeUniteLegale",
    ),
)
WALDEC = FileFormat(
    "rna",
    "RNA waldec",
    "id",
    (
        "id",
        "siret",
        "date_creat",
        "date_disso",
        "adrs_complement",
        "adrs_numvoie",
        "adrs_repetition",
        "adrs_typevoie",
        "adrs_libvoie",
        "adrs_codeinsee",
        "adrs_codepostal",
        "adrs_libcommune",
        "position",
    ),
)
FORMATS = (ETABLISSEMENT, UNITE_LEGALE, WALDEC)
SIRENE_KINDS = (ETABLISSEMENT.kind, UNITE_LEGALE.kind)

# Street types of SIRENE (typeVoieEtablissement) and RNA (adrs_typevoie), INSEE's codes: spelt
# out for the address line and the geocoder. An unknown code is kept as written.
STREET_TYPES = {
    "ALL": "ALLEE",
    "AV": "AVENUE",
    "BD": "BOULEVARD",
    "CAR": "CARREFOUR",
    "CHE": "CHEMIN",
    "CHS": "CHAUSSEE",
    "CITE": "CITE",
    "COR": "CORNICHE",
    "CRS": "COURS",
    "DOM": "DOMAINE",
    "DSC": "DESCENTE",
    "ECA": "ECART",
    "ESP": "ESPLANADE",
    "FG": "FAUBOURG",
    "GR": "GRANDE RUE",
    "HAM": "HAMEAU",
    "HLE": "HALLE",
    "IMP": "IMPASSE",
    "LD": "LIEU DIT",
    "LOT": "LOTISSEMENT",
    "MAR": "MARCHE",
    "MTE": "MONTEE",
    "PAS": "PASSAGE",
    "PL": "PLACE",
    "PLN": "PLAINE",
    "PLT": "PLATEAU",
    "PRO": "PROMENADE",
    "PRV": "PARVIS",
    "QUA": "QUARTIER",
    "QUAI": "QUAI",
    "RES": "RESIDENCE",
    "RLE": "RUELLE",
    "ROC": "ROCADE",
    "RPT": "ROND POINT",
    "RTE": "ROUTE",
    "RUE": "RUE",
    "SEN": "SENTIER",
    "SQ": "SQUARE",
    "TPL": "TERRE PLEIN",
    "TRA": "TRAVERSE",
    "VLA": "VILLA",
    "VLGE": "VILLAGE",
}
# indiceRepetition: B, T, Q, C (bis, ter, quater, quinquies) or a letter.
REPETITION = {"B": "BIS", "T": "TER", "Q": "QUATER", "C": "QUINQUIES"}

_SAMPLE = 1 << 16
Progress = Callable[[int, int | None], None]


class _Counting(io.RawIOBase):
    """A raw stream that counts the bytes read through it (the progress of a stream)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.done = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Fill `buffer` from the inner stream."""
        data = self.inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.done += n
        return n


@dataclass
class OpenedFile:
    """An official file opened as a stream of CSV records."""

    name: str
    format: FileFormat
    header: list[str]
    index: dict[str, int]
    records: Iterator[list[str]]
    total_bytes: int | None
    counter: _Counting
    encoding: str
    stream: io.TextIOWrapper

    def close(self) -> None:
        """Close the underlying file (and zip member)."""
        self.stream.close()

    @property
    def bytes_done(self) -> int:
        """Uncompressed bytes read so far."""
        return self.counter.done


def _raw_stream(path: Path) -> tuple[IO[bytes], int | None, str]:
    """The file's bytes (the single CSV of a zip), their size, and the name to report."""
    try:
        if zipfile.is_zipfile(path):
            zf = zipfile.ZipFile(path)
            members = [i for i in zf.infolist() if i.filename.lower().endswith(".csv")]
            if len(members) != 1:
                raise ImportFileError(
                    path.name, f"archive zip : un seul fichier CSV attendu, {len(members)} trouvés"
                )
            info = members[0]
            return zf.open(info), info.file_size, f"{path.name}!{info.filename}"
        fh = path.open("rb")
        return fh, path.stat().st_size, path.name
    except IsADirectoryError as exc:
        raise ImportFileError(path.name, "c'est un dossier : un fichier est attendu") from exc
    except OSError as exc:
        raise ImportFileError(path.name, f"lecture impossible : {exc.strerror or exc}") from exc
    except zipfile.BadZipFile as exc:
        raise ImportFileError(path.name, f"archive zip illisible : {exc}") from exc


def _encoding(sample: bytes) -> str:
    """utf-8-sig when the sample decodes as UTF-8 (a cut last character allowed), else cp1252."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8-sig"


def open_official(path: Path, expected: tuple[str, ...]) -> OpenedFile:
    """Open an official file, recognise its layout from its header; refuse any other file.

    `expected` lists the acceptable format kinds (SIRENE: either stock; RNA: waldec).
    Undecodable bytes become U+FFFD: only the rows that matter are then refused, by row.
    """
    raw, size, name = _raw_stream(path)
    counter = _Counting(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    encoding = _encoding(buffered.peek(_SAMPLE)[:_SAMPLE])
    text = io.TextIOWrapper(buffered, encoding=encoding, errors="replace", newline="")
    first = text.readline()
    if not first.strip():
        raise ImportFileError(name, "fichier vide : une ligne d'en-tête est attendue", row=1)
    delimiter = ";" if first.count(";") > first.count(",") else ","
    header = next(csv.reader([first], delimiter=delimiter))
    header = [h.strip().strip("\ufeff") for h in header]
    index = {h: i for i, h in enumerate(header)}
    found = None
    for fmt in FORMATS:
        if fmt.key in index and all(c in index for c in fmt.needed):
            found = fmt
            break
    if found is None or found.kind not in expected:
        wanted = [f for f in FORMATS if f.kind in expected]
        missing = {f.label: [c for c in f.needed if c not in index] for f in wanted}
        best = min(missing.items(), key=lambda kv: len(kv[1]))
        what = found.label if found else "un fichier d'un autre format"
        raise ImportFileError(
            name,
            f"{what} : {' ou '.join(f.label for f in wanted)} attendu ; "
            f"colonnes absentes pour {best[0]} : {', '.join(best[1][:8])}"
            + (" …" if len(best[1]) > 8 else ""),
            row=1,
        )
    _raise_field_limit()
    reader = csv.reader(text, delimiter=delimiter)
    return OpenedFile(name, found, header, index, reader, size, counter, encoding, text)


def _raise_field_limit() -> None:
    """RNA `objet` cells run long; a cell up to 1 MB is read, beyond csv raises per row."""
    if csv.field_size_limit() < 1 << 20:
        csv.field_size_limit(1 << 20)


ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
COMMUNE_CODE = re.compile(r"(?:[0-9]{2}|2A|2B)[0-9]{3}")
POSTCODE = re.compile(r"[0-9]{5}")
CATEGORY = re.compile(r"[0-9]{4}")
