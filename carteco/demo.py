"""The Île-de-France demo: reference layers plus three real structure lists, each its own source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The demo files ship in the same distribution as carteco, in the geodata package next to it.
# They are found by path: the core never imports geodata (tests/test_architecture.py).
DEMO_DIR = Path(__file__).resolve().parent.parent / "geodata" / "demo"


@dataclass(frozen=True)
class DemoSource:
    """One demo file, the source name it is imported under, and its mapping."""

    source: str
    file: str
    mapping: str
    # Real files carry real mistakes: the médiation list has 2 malformed SIRETs, reported
    # and left out rather than silently "fixed".
    skip_invalid: bool = False

    @property
    def path(self) -> Path:
        """The shipped demo file."""
        return demo_dir() / self.file

    @property
    def mapping_path(self) -> Path:
        """Its mapping file."""
        return demo_dir() / self.mapping


DEMO_SOURCES = (
    DemoSource("siae-2019", "siae_idf_2019-07.csv", "siae.mapping.toml"),
    DemoSource(
        "mediation-numerique-2022",
        "mediation_numerique_idf_2022.csv",
        "mediation_numerique.mapping.toml",
        skip_invalid=True,
    ),
    DemoSource(
        "supermarches-cooperatifs-2025",
        "supermarches_cooperatifs_idf_2025.geojson",
        "supermarches_cooperatifs.mapping.toml",
    ),
)


@dataclass(frozen=True)
class DemoLandLayer:
    """One land layer of the demo (Île-de-France), its kind and how it is described."""

    kind: str
    file: str
    source: str
    description: str
    vintage: str

    @property
    def path(self) -> Path:
        """The shipped demo file."""
        return demo_dir() / self.file


# Real Île-de-France land layers, so that the 93 and 94 diagnostics rest on real data.
DEMO_LAND = (
    DemoLandLayer(
        "friches",
        "cartofriches_sites_idf.csv",
        "cartofriches-idf-2023",
        "Cartofriches (Cerema) : sites en Île-de-France, statut et inventaire d'origine",
        "2023",
    ),
    DemoLandLayer(
        "lovac",
        "lovac_vacance_idf_2021.csv",
        "lovac-idf-2021",
        "LOVAC : part des logements privés vacants depuis 2 ans ou plus au 1er janvier 2021",
        "2021",
    ),
    DemoLandLayer(
        "dvf",
        "geodvf_93070_saint-ouen_2018-2022.csv",
        "geodvf-93070-2018-2022",
        "DVF géolocalisées (Etalab) : échantillon de 17 parcelles de Saint-Ouen-sur-Seine",
        "2018-2022",
    ),
    DemoLandLayer(
        "adultes_relais",
        "anct_adultes_relais_idf_2023.csv",
        "anct-adultes-relais-idf-2023",
        "ANCT : postes d'adultes-relais financés en 2023 (employeur identifié par son SIRET)",
        "2023",
    ),
    DemoLandLayer(
        "fonjep_qpv",
        "anct_postes_fonjep_qpv_idf_2023.csv",
        "anct-fonjep-qpv-idf-2023",
        "ANCT : postes FONJEP financés en QPV en 2023 (employeur identifié par son nom)",
        "2023",
    ),
)


def demo_dir() -> Path:
    """Folder of the demo files (inside the installed geodata package)."""
    return DEMO_DIR
