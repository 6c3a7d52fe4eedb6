"""Column mapping: which input header feeds which registry field, and how labels become codes."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from carteco.importer.errors import ImportFileError
from carteco.text import header_key

# Registry field → usual French (and GoGoCarto / English) headers, most specific first.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "source_id": ("source_id", "id", "identifiant", "uid", "id_structure"),
    "siret": ("siret", "n_siret", "numero_siret", "siret_siege", "siret_etablissement"),
    "siren": ("siren", "n_siren", "numero_siren"),
    "rna": ("rna", "numero_rna", "n_rna", "waldec", "identifiantassociationunitelegale"),
    "name": (
        "nom",
        "name",
        "raison_sociale",
        "denomination",
        "denomination_sociale",
        "nom_structure",
        "titre",
        "enseigne",
        "nom_de_la_structure",
        "denominationunitelegale",  # SIRENE stock: denominationUniteLegale
    ),
    "legal_category": (
        "categorie_juridique",
        "code_categorie_juridique",
        "cat_juridique",
        "cj",
        "categoriejuridiqueunitelegale",  # SIRENE stock: categorieJuridiqueUniteLegale
        "categorie_juridique_unite_legale",
    ),
    "legal_form": (
        "forme_juridique",
        "nature_juridique",
        "statut_juridique",
        "statut_ess",
        "statut",
    ),
    "ess_family": ("famille_ess", "famille"),
    # SIRENE's ESS flag (O/N): makes a commercial company "societe_commerciale_ess".
    "ess_flag": (
        "economiesocialesolidaireunitelegale",  # SIRENE stock: economieSocialeSolidaireUniteLegale
        "economie_sociale_solidaire_unite_legale",
        "economie_sociale_solidaire",
        "flag_ess_sirene",
        "flag_ess",
        "indicateur_ess",
    ),
    "esus": ("esus", "agrement_esus", "agree_esus"),
    "sectors": (
        "secteurs",
        "secteur",
        "filieres",
        "filiere",
        "categories",
        "categorie",
        "sectors",
        "sector",
        "activites",
    ),
    "description": ("description", "description_activite", "resume", "presentation"),
    "address_line": ("adresse", "adresse_complete", "address", "street_address", "adresse_postale"),
    "street_number": ("num_rue", "numero", "num", "numero_voie", "n_voie", "no_voie"),
    "street_name": ("nom_rue", "voie", "nom_voie", "libelle_voie", "rue"),
    "address_complement": ("complement_adresse", "complement", "adresse_complement"),
    "postcode": ("code_postal", "cp", "postcode", "code_post_com", "postal_code"),
    "commune_name": ("commune", "ville", "nom_commune", "lib_com", "localite", "city"),
    "insee_code": ("code_insee", "insee", "code_commune", "citycode", "code_commune_insee"),
    "latitude": ("latitude", "lat", "y_wgs84", "geo_latitude"),
    "longitude": ("longitude", "lon", "lng", "long", "x_wgs84", "geo_longitude"),
    "x": ("x", "x_l93", "x_lambert93", "coord_x", "xl93"),
    "y": ("y", "y_l93", "y_lambert93", "coord_y", "yl93"),
    "website": ("site_web", "site_internet", "website", "site", "url", "web"),
    "status": (
        "etat",
        "statut_activite",
        "est_active",
        "actif",
        "etat_administratif",
        "statut_gogocarto",  # set by the GoGoCarto reader from the element's "status"
    ),
    # SIRENE: dateCreationEtablissement (else dateCreationUniteLegale); RNA waldec: date_creat,
    # date_disso. SIRENE's dateDebut starts the current *period* of an establishment (for a
    # closed one, its closing date), not its creation: it is not taken as an opening date.
    # GoGoCarto's createdAt dates the map entry, not the structure: not taken either.
    "opened_on": (
        "date_creation",
        "date_ouverture",
        "opened_on",
        "datecreationetablissement",
        "datecreationunitelegale",
        "date_creat",
    ),
    "closed_on": ("date_fermeture", "date_cessation", "closed_on", "date_disso"),
}
FIELDS = tuple(DEFAULT_ALIASES)


@dataclass
class Mapping:
    """How a file's headers map to registry fields, plus label → sector code translations."""

    columns: dict[str, str] = field(default_factory=dict)
    sectors: dict[str, str | None] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    keep_extra: bool = True

    @classmethod
    def from_file(cls, path: Path) -> Mapping:
        """Read a mapping file (TOML or JSON) with [columns], [sectors] and [constants]."""
        try:
            raw = path.read_bytes()
            doc = tomllib.loads(raw.decode()) if path.suffix == ".toml" else json.loads(raw)
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ImportFileError(
                path.name, f"fichier de correspondance illisible : {exc}"
            ) from exc
        unknown = set(doc.get("columns", {})) - set(FIELDS)
        unknown |= set(doc.get("constants", {})) - set(FIELDS)
        if unknown:
            raise ImportFileError(
                path.name, f"champs inconnus dans la correspondance : {', '.join(sorted(unknown))}"
            )
        sectors = {k: (v or None) for k, v in doc.get("sectors", {}).items()}
        return cls(
            columns=dict(doc.get("columns", {})),
            sectors=sectors,
            constants=dict(doc.get("constants", {})),
            keep_extra=bool(doc.get("keep_extra", True)),
        )

    def resolve(self, file: str, headers: list[str]) -> dict[str, str]:
        """Field → header actually present, explicit columns first, then default aliases."""
        by_key: dict[str, str] = {}
        for h in headers:
            by_key.setdefault(header_key(h), h)
        out: dict[str, str] = {}
        for fld, header in self.columns.items():
            if header not in headers:
                raise ImportFileError(
                    file, f"la correspondance attend la colonne « {header} » pour « {fld} »"
                )
            out[fld] = header
        used = set(out.values())
        for fld, aliases in DEFAULT_ALIASES.items():
            if fld in out or fld in self.constants:
                continue
            for alias in aliases:
                found = by_key.get(alias)
                if found is not None and found not in used:
                    out[fld] = found
                    used.add(found)
                    break
        return out
