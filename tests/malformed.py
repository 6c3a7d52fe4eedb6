"""A corpus of malformed inputs (≥ 100), built from real demo rows, each with the reason expected.

Each case is a file (name + bytes) that must be refused with a clear message naming the row,
column and reason (or, for an unreadable file, the file and reason), leaving the database as it was.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass

from carteco.demo import DEMO_SOURCES


@dataclass(frozen=True)
class Case:
    """One malformed input."""

    id: str
    name: str
    data: bytes
    reason: str  # a substring of the expected message
    row: int | None = None  # the row the error must name, when it is a row error


def _rows() -> tuple[list[str], list[dict[str, str]]]:
    med = next(d for d in DEMO_SOURCES if d.source.startswith("mediation"))
    with med.path.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if len(r["siret"]) in (0, 14)][:6]
        return list(reader.fieldnames or []), rows


def _csv(header: list[str], rows: list[dict[str, str]], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, delimiter=delimiter, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _with(rows: list[dict[str, str]], index: int, **changes: str) -> list[dict[str, str]]:
    out = [dict(r) for r in rows]
    out[index].update(changes)
    return out


SQL_INJECTIONS = [
    "'; DROP TABLE structures; --",
    "1 OR 1=1",
    "1; DELETE FROM structures",
    "' UNION SELECT password FROM pg_shadow --",
    "$$; DROP TABLE territories; $$",
]
FORMULAS = ["=CMD()", '=HYPERLINK("http://x")', "@SUM(A1:A9)", "+cmd('calc')", "-SUM(1,2)"]


def corpus() -> list[Case]:
    """Every malformed case (at least 100)."""
    header, rows = _rows()
    cases: list[Case] = []

    def row_case(cid: str, field: str, value: str, reason: str, index: int = 2) -> None:
        cases.append(
            Case(
                cid,
                f"{cid}.csv",
                _csv(header, _with(rows, index, **{field: value})),
                reason,
                index + 2,
            )
        )

    # Identifiers: SIRET typos of every kind.
    good = next(r["siret"] for r in rows if r["siret"])
    for i, pos in enumerate((0, 4, 8, 12, 13)):
        bad = good[:pos] + str((int(good[pos]) + 3) % 10) + good[pos + 1 :]
        row_case(f"siret-digit-{i}", "siret", bad, "SIRET invalide")
    for i, bad in enumerate(
        (good[:-1], good + "0", good[:9], "ABCDEFGHIJKLMN", good[:7] + "O" + good[8:])
    ):
        row_case(f"siret-shape-{i}", "siret", bad, "SIRET invalide")
    for i, inj in enumerate(SQL_INJECTIONS):
        row_case(f"siret-sql-{i}", "siret", inj, "SIRET invalide")
    # Postcodes.
    for i, bad in enumerate(
        ("7501A", "750011", "75 0 1 1 1", "ABCDE", "'; DROP TABLE postcodes; --")
    ):
        row_case(f"postcode-{i}", "code_postal", bad, "code postal")
    # Coordinates: swapped, out of range, Lambert-93 in degree columns, unreadable, not finite.
    lat, lon = rows[2]["latitude"], rows[2]["longitude"]
    for i, (la, lo, reason) in enumerate(
        [
            (lon, lat, "inversées"),
            ("95.0", lon, "hors de France"),
            (lat, "200", "hors de France"),
            ("-48.85", lon, "hors de France"),
            ("40.7128", "-74.0060", "hors de France"),
            ("6862278", "660366", "Lambert-93"),
            ("48,8x", lon, "nombre illisible"),
            ("nan", lon, "nombre illisible"),
            ("inf", lon, "nombre illisible"),
            ("", lon, "nombre illisible"),
            (lat, "1 OR 1=1", "nombre illisible"),
            (lat, "1e400", "nombre illisible"),
        ]
    ):
        cases.append(
            Case(
                f"coords-{i}",
                f"coords-{i}.csv",
                _csv(header, _with(rows, 2, latitude=la, longitude=lo)),
                reason,
                4,
            )
        )
    # Formula injection and control characters in any text cell.
    for field in ("nom", "adresse", "commune", "horaires", "services"):
        for i, f in enumerate(FORMULAS):
            row_case(f"formula-{field}-{i}", field, f, "formule de tableur")
    for i, ctl in enumerate(("x\x07y", "\x1b[31mrouge", "a\x0bb")):
        row_case(f"control-{i}", "nom", ctl, "contrôle")
    row_case("nul-byte", "nom", "a\x00b", "octets nuls")  # NUL: not a text file at all
    # A 10 MB cell.
    row_case("huge-cell", "services", "x" * 10_000_000, "cellule trop longue")
    # Missing name; unknown sector; bad INSEE, dates, status, RNA, ESUS (extra columns).
    row_case("no-name", "nom", "", "nom de la structure manquant")
    h2 = [*header, "secteur", "code_insee", "date_creation", "etat", "rna", "esus"]
    base = [
        dict(r, secteur="Réemploi", code_insee="", date_creation="", etat="", rna="", esus="")
        for r in rows
    ]
    for cid, field, value, reason in [
        ("sector-unknown", "secteur", "Astrologie", "secteur inconnu"),
        ("sector-sql", "secteur", SQL_INJECTIONS[0], "secteur inconnu"),
        ("insee-letters", "code_insee", "ABCDE", "code INSEE"),
        ("insee-long", "code_insee", "930481", "code INSEE"),
        ("insee-sql", "code_insee", "1 OR 1=1", "code INSEE"),
        ("insee-corsica", "code_insee", "2C004", "code INSEE"),
        ("date-bad", "date_creation", "31/02/20x", "date illisible"),
        ("date-sql", "date_creation", "2020-01-01'; --", "date illisible"),
        ("status-bad", "etat", "peut-être", "statut attendu"),
        ("rna-bad", "rna", "X123", "RNA invalide"),
        ("esus-bad", "esus", "souvent", "ESUS"),
    ]:
        cases.append(Case(cid, f"{cid}.csv", _csv(h2, _with(base, 3, **{field: value})), reason, 5))
    # Lambert-93 columns out of their area, or holding degrees.
    for i, (x, y, reason) in enumerate(
        [
            ("60366", "862278", "emprise du Lambert-93"),
            ("2.35", "48.85", "ressemblent à des degrés"),
            ("abc", "6862278", "nombre illisible"),
        ]
    ):
        body = f"nom,x,y\nMairie,{x},{y}\n".encode()
        cases.append(Case(f"l93-{i}", f"l93-{i}.csv", body, reason, 2))
    # Shapes of the file itself.
    text = _csv(header, rows).decode()
    lines = text.splitlines()
    mixed = "\n".join([lines[0].replace(",", ";"), *lines[1:]]) + "\n"
    cases.append(Case("mixed-delimiters", "mixed.csv", mixed.encode(), "champs au lieu de", 2))
    cases.append(
        Case("truncated-csv", "truncated.csv", text[: len(text) // 2].encode(), "champs au lieu de")
    )
    cases.append(
        Case("ragged-row", "ragged.csv", (text + "a,b,c\n").encode(), "champs au lieu de", 8)
    )
    dup = lines[0] + ",nom\n" + "\n".join(line + ",X" for line in lines[1:]) + "\n"
    cases.append(Case("duplicate-header", "dup.csv", dup.encode(), "en double"))
    cases.append(Case("empty-header", "emptyh.csv", ("," + text).encode(), "pas d'en-tête"))
    cases.append(Case("empty-file", "empty.csv", b"", "fichier vide"))
    cases.append(Case("blank-file", "blank.csv", b"\n\n  \n", "fichier vide"))
    cases.append(Case("header-only", "header.csv", (lines[0] + "\n").encode(), "aucune ligne"))
    cases.append(Case("utf16", "utf16.csv", text.encode("utf-16"), "octets nuls"))
    cases.append(
        Case("binary-png", "image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "octets nuls")
    )
    cases.append(Case("no-name-column", "noname.csv", b"foo,bar\n1,2\n", "aucune colonne de nom"))
    cases.append(Case("bom-only", "bom.csv", b"\xef\xbb\xbf", "fichier vide"))
    # JSON and GeoJSON.
    coop = next(d for d in DEMO_SOURCES if d.source.startswith("supermarches"))
    gj = json.loads(coop.path.read_text(encoding="utf-8"))
    raw = json.dumps(gj).encode()
    cases.append(Case("geojson-truncated", "cut.geojson", raw[: len(raw) // 2], "JSON illisible"))
    cases.append(
        Case("json-not-fc", "x.json", b'{"type": "Feature", "geometry": null}', "FeatureCollection")
    )
    cases.append(Case("json-array-numbers", "x.json", b"[1, 2, 3]", "FeatureCollection"))
    cases.append(Case("json-garbage", "x.geojson", b"{nope", "JSON illisible"))
    cases.append(
        Case("gogocarto-bad-element", "elements.json", b'{"data": [1, 2]}', "pas un objet")
    )
    for i, (geom, reason) in enumerate(
        [
            (
                {
                    "type": "Polygon",
                    "coordinates": [[[2.3, 48.8], [2.4, 48.8], [2.4, 48.9], [2.3, 48.8]]],
                },
                "Point",
            ),
            ({"type": "Point", "coordinates": ["a", "b"]}, "illisibles"),
            ({"type": "Point", "coordinates": [48.85, 2.35]}, "inversées"),
            ({"type": "Point", "coordinates": [-74.0, 40.7]}, "hors de France"),
            ({"type": "Point", "coordinates": []}, "illisibles"),
            ({"type": "LineString", "coordinates": [[2.3, 48.8]] * 100_000}, "Point"),
        ]
    ):
        doc = json.loads(raw)
        doc["features"][1]["geometry"] = geom
        cases.append(
            Case(f"geojson-geom-{i}", f"g{i}.geojson", json.dumps(doc).encode(), reason, 2)
        )
    doc = json.loads(raw)
    doc["features"][0]["properties"]["nom"] = "=CMD()"
    cases.append(Case("geojson-formula", "f.geojson", json.dumps(doc).encode(), "formule", 1))
    # JSON of the wrong shape or depth: a clear message, never a TypeError/RecursionError.
    fc = b'{"type": "FeatureCollection", "features": %s}'
    for cid, body, reason in [
        ("geojson-features-number", fc % b"5", "« features » doit être une liste"),
        ("geojson-features-text", fc % b'"abc"', "« features » doit être une liste"),
        ("geojson-features-object", fc % b'{"a": 1}', "« features » doit être une liste"),
        ("geojson-feature-number", fc % b"[7]", "n° 1 qui n'est pas un objet"),
        (
            "geojson-properties-list",
            fc % b'[{"type": "Feature", "properties": [1, 2], "geometry": null}]',
            "« properties » doit être un objet",
        ),
        (
            "geojson-properties-text",
            fc % b'[{"type": "Feature", "properties": "nom", "geometry": null}]',
            "« properties » doit être un objet",
        ),
        ("geojson-deep-array", fc % (b"[" * 100_000 + b"]" * 100_000), "trop imbriqué"),
        (
            "geojson-deep-property",
            fc % (b'[{"properties": {"nom": "A", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}}]"),
            "trop imbriqué",
        ),
        ("json-deep-object", b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "trop imbriqué"),
        ("gogocarto-deep", b'{"data": [' + b"[" * 3000 + b"]" * 3000 + b"]}", "trop imbriqué"),
        (
            "gogocarto-geo-number",
            b'{"data": [{"name": "A", "geo": 5}]}',
            "« geo » doit être un objet",
        ),
        (
            "gogocarto-address-list",
            b'{"data": [{"name": "A", "address": ["1 rue X"]}]}',
            "« address » doit être un objet",
        ),
    ]:
        cases.append(Case(cid, f"{cid}.json", body, reason))
    # A dict or a list where a text is expected: a row error, never its Python repr stored.
    for i, (fld, value) in enumerate(
        [
            ("nom", {"fr": "Nom", "en": "Name"}),
            ("nom", ["A", "B"]),
            ("code_postal", {"cp": "75011"}),
            ("adresse", [1, 2]),
            ("nom", True),
            ("id", {"x": 1}),
        ]
    ):
        doc = json.loads(raw)
        doc["features"][0]["properties"][fld] = value
        cases.append(
            Case(f"geojson-text-{i}", f"t{i}.geojson", json.dumps(doc).encode(), "texte attendu", 1)
        )
    for i, geometry in enumerate(['"POINT(2 48)"', "5", "[2.3, 48.8]"]):
        body = fc % f'[{{"properties": {{"nom": "A"}}, "geometry": {geometry}}}]'.encode()
        cases.append(Case(f"geojson-geometry-type-{i}", f"gt{i}.geojson", body, "géométrie", 1))
    doc = json.loads(raw)
    note: object = 1
    for _ in range(20):
        note = {"a": note}
    doc["features"][0]["properties"]["note"] = note
    cases.append(Case("geojson-extra-deep", "xd.geojson", json.dumps(doc).encode(), "imbriquée", 1))
    nan = json.dumps(json.loads(raw)).replace('"properties": {', '"properties": {"score": NaN, ', 1)
    cases.append(Case("geojson-extra-nan", "nan.geojson", nan.encode(), "non fini", 1))
    cases.append(
        Case(
            "gogocarto-name-dict",
            "gn.json",
            b'{"data": [{"name": {"fr": "A"}, "geo": {"latitude": 48.85, "longitude": 2.35}}]}',
            "texte attendu",
            1,
        )
    )
    # Script URLs in any cell; web addresses limited to http(s); codes in ASCII digits only.
    for i, url in enumerate(
        [
            "javascript:alert(1)",
            " JavaScript:alert(document.cookie)",
            "java\tscript:alert(1)",
            "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
            "vbscript:msgbox(1)",
        ]
    ):
        row_case(f"script-url-extra-{i}", "horaires", url, "refusée")
        body = _csv(["nom", "site_web"], [{"nom": "A", "site_web": url}])
        cases.append(Case(f"script-url-website-{i}", f"w{i}.csv", body, "refusée", 2))
    for i, url in enumerate(["ftp://exemple.org", "mailto:a@b.fr", "http://", "exemple"]):
        body = _csv(["nom", "site_web"], [{"nom": "A", "site_web": url}])
        cases.append(Case(f"website-{i}", f"ws{i}.csv", body, "adresse web attendue", 2))
    for i, pc in enumerate(
        ["\u0667\u0665\u0660\u0661\u0661", "\uff17\uff15\uff10\uff11\uff11", "7501\u0661"]
    ):
        row_case(f"postcode-unicode-digits-{i}", "code_postal", pc, "code postal")
    for i, siret in enumerate(["\u0663" * 14, "\uff13" * 14]):
        row_case(f"siret-unicode-digits-{i}", "siret", siret, "SIRET invalide")
    cases.append(
        Case(
            "insee-unicode-digits",
            "insee-u.csv",
            _csv(h2, _with(base, 3, code_insee="\u0669\u0663\u0660\u0664\u0668")),
            "code INSEE",
            5,
        )
    )
    # XLSX: corrupt, zip bomb, empty, a bad SIRET in a sheet.
    cases.append(Case("xlsx-corrupt", "x.xlsx", b"PK\x03\x04" + b"\x00" * 200, "XLSX"))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("xl/worksheets/sheet1.xml", b"\x00" * (300 * 1024 * 1024))
    cases.append(Case("xlsx-zip-bomb", "bomb.xlsx", bomb.getvalue(), "bombe zip"))
    cases.append(Case("xlsx-empty", "empty.xlsx", _xlsx([]), "feuille vide"))
    sheet = [header] + [[r[h] for h in header] for r in _with(rows, 1, siret="12345678901234")]
    cases.append(Case("xlsx-bad-siret", "bad.xlsx", _xlsx(sheet), "SIRET invalide", 3))
    sheet = [header, header] + [[r[h] for h in header] for r in rows]
    cases.append(
        Case("xlsx-dup-header-row", "dup.xlsx", _xlsx([[*header, "nom"]] + sheet[1:]), "en double")
    )
    # One far cell (4.9 KB file): refused from the cells written, not from its coordinates.
    cases.append(Case("xlsx-far-cell", "far.xlsx", xlsx_far_cell(), "XFD1048576"))
    near = [["nom", "code_postal"], ["A", "75011"]]
    cases.append(Case("xlsx-beyond-header", "beyond.xlsx", _xlsx(near, {"F9": "note"}), "F9", 9))
    return cases


def xlsx_far_cell(value: object = "x") -> bytes:
    """A small sheet whose only far cell is XFD1048576 (the last cell of a sheet)."""
    return _xlsx([["nom", "code_postal"], ["Structure", "75011"]], {"XFD1048576": value})


def _xlsx(rows: list[list[object]], cells: dict[str, object] | None = None) -> bytes:
    import openpyxl
    from openpyxl.styles import Font

    wb = openpyxl.Workbook()
    ws = wb.active
    for r in rows:
        ws.append(r)
    for ref, value in (cells or {}).items():
        if value is None:
            ws[ref].font = Font(bold=True)  # an empty but styled cell: still written
        else:
            ws[ref] = value
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
