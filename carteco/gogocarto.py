"""GoGoCarto export: structures as a GoGoCarto `elements.json`, with the sector tree.

The shape is the one GoGoCarto's API gives and its importer (and Carteco's reader,
carteco/importer/readers.py) reads: ``{"licence", "ontology", "taxonomy", "data": [element]}``
where an element has ``id``, ``name``, ``geo`` {latitude, longitude}, ``address``
{streetAddress, postalCode, addressLocality, addressCountry}, ``categories`` (sector labels),
``status`` (the GoGoCarto moderation code the source gave, if any) and one key per other
known field, named as Carteco's importer recognises it (carteco/importer/mapping.py); a
field Carteco does not know is left out (no nulls). The columns a source had and
Carteco did not map (kept in ``extra``) come back as they were, so a file exported here and
imported again under its source changes nothing ("0 created, 0 updated"). GoGoCarto has no
"closed": a closed structure carries ``"status": "closed"`` (Carteco's reader reads it back).
The elements' JSON is built by PostgreSQL and streamed (constant memory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy.engine import Engine

from carteco.collections import Collection
from carteco.features import iter_rows
from carteco.sectors import Taxonomy, load_taxonomy
from carteco.settings import Settings
from carteco.text import fold

# Element key → structures column, for the plain fields (names the importer maps back).
FIELD_KEYS = (
    ("siret", "siret"),
    ("siren", "siren"),
    ("rna", "rna"),
    ("categorie_juridique", "legal_category"),
    ("forme_juridique", "legal_form"),
    ("famille_ess", "ess_family"),
    ("esus", "esus"),
    ("description", "description"),
    ("code_insee", "insee_code"),
    ("site_web", "website"),
)
DATE_KEYS = (("date_creation", "opened_on"), ("date_fermeture", "closed_on"))
OWN_KEYS = ("id", "name", "geo", "address", "categories", "status") + tuple(
    k for k, _ in (*FIELD_KEYS, *DATE_KEYS)
)


def category_names(taxonomy: Taxonomy) -> dict[str, str]:
    """Sector code → the name an element carries: its label, or its code when ambiguous."""
    index = taxonomy.label_index()
    return {
        n.code: n.label if index.get(fold(n.label)) == n.code else n.code for n in taxonomy.nodes
    }


def taxonomy_tree(taxonomy: Taxonomy) -> list[dict[str, Any]]:
    """The sector taxonomy as GoGoCarto categories: each node's options and subcategories."""
    names = category_names(taxonomy)
    children: dict[str | None, list[Any]] = {}
    for n in taxonomy.nodes:
        children.setdefault(n.parent, []).append(n)

    def option(node: Any) -> dict[str, Any]:
        opt: dict[str, Any] = {
            "id": node.code,
            "name": names[node.code],
            "color": node.color,
            "icon": node.icon,
        }
        kids = children.get(node.code, [])
        if kids:
            opt["subcategories"] = [
                {
                    "id": f"{node.code}:sous-categories",
                    "name": node.label,
                    "options": [option(k) for k in kids],
                }
            ]
        return opt

    return [
        {
            "id": "secteurs",
            "name": "Secteurs d'activité",
            "options": [option(n) for n in children.get(None, [])],
        }
    ]


def element_sql(collection: Collection) -> str:
    """SQL of one element's JSON text over alias `t` (`:gogo_names` binds code → name)."""
    q = collection.q
    fields = ", ".join(f"'{key}', {q(col)}" for key, col in FIELD_KEYS)
    dates = ", ".join(f"'{key}', to_char({q(col)}, 'YYYY-MM-DD')" for key, col in DATE_KEYS)
    own = ", ".join(f"'{k}'" for k in OWN_KEYS)
    g = q("geom")
    # Keys are constants, columns allow-listed (collection.q), values bound.
    return (
        f"((coalesce({q('extra')}, '{{}}'::jsonb) - ARRAY[{own}]::text[]) || "  # noqa: S608
        "jsonb_strip_nulls(jsonb_build_object("
        f"'id', {q('source_id')}, 'name', {q('name')}, "
        f"'geo', CASE WHEN {g} IS NULL THEN NULL ELSE jsonb_build_object("
        f"'latitude', ST_Y({g}), 'longitude', ST_X({g})) END, "
        f"'address', jsonb_build_object('streetAddress', {q('address_line')}, "
        f"'postalCode', {q('postcode')}, 'addressLocality', {q('commune_name')}, "
        "'addressCountry', 'FR'), "
        f"'categories', to_jsonb(ARRAY(SELECT coalesce(CAST(:gogo_names AS jsonb) ->> c, c) "
        f"FROM unnest({q('sectors')}) WITH ORDINALITY AS u(c, i) ORDER BY i)), "
        f"'status', CASE WHEN {q('status')} = 'closed' THEN to_jsonb('closed'::text) "
        f"ELSE {q('extra')} -> 'status' END, "
        f"{fields}, {dates})))::text"
    )


def gogocarto_meta(settings: Settings) -> dict[str, Any]:
    """The top-level members of an export: licence and attribution."""
    return {"licence": settings.data_licence, "attribution": settings.data_attribution}


def gogocarto_stream(
    engine: Engine,
    collection: Collection,
    where: str,
    binds: dict[str, Any],
    limit: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Iterator[bytes]:
    """An `elements.json` (taxonomy first, then the elements), yielded in chunks."""
    taxonomy = load_taxonomy()
    head = {**(meta or {}), "ontology": "gogofull", "taxonomy": taxonomy_tree(taxonomy)}
    yield (json.dumps(head, ensure_ascii=False)[:-1] + ', "data": [').encode()
    params = {**binds, "gogo_names": json.dumps(category_names(taxonomy), ensure_ascii=False)}
    first = True
    with engine.connect() as conn:
        for chunk in iter_rows(conn, collection, element_sql(collection), where, params, limit):
            text = ",".join(chunk)
            yield (text if first else "," + text).encode()
            first = False
    yield b"]}\n"
