"""Address normalisation and parsing: the same keys on the reference side and the query side."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

# Street-type abbreviations: only expanded as the first word of a street name, because the
# same letters mean something else inside a name ("R PANHARD" = René, "ALL" = all…).
STREET_TYPES = {
    "av": "avenue",
    "ave": "avenue",
    "avn": "avenue",
    "bd": "boulevard",
    "bld": "boulevard",
    "blvd": "boulevard",
    "bvd": "boulevard",
    "boul": "boulevard",
    "r": "rue",
    "pl": "place",
    "che": "chemin",
    "chem": "chemin",
    "ch": "chemin",
    "chm": "chemin",
    "imp": "impasse",
    "all": "allee",
    "al": "allee",
    "sq": "square",
    "fg": "faubourg",
    "fbg": "faubourg",
    "rte": "route",
    "crs": "cours",
    "qu": "quai",
    "qua": "quai",
    "res": "residence",
    "resid": "residence",
    "lot": "lotissement",
    "prom": "promenade",
    "sent": "sentier",
    "carr": "carrefour",
    "rpt": "rond point",
    "pte": "porte",
    "mte": "montee",
    "ham": "hameau",
    "vla": "villa",
    "pass": "passage",
    "psg": "passage",
    "esp": "esplanade",
    "espl": "esplanade",
    "trav": "traverse",
    "ccial": "centre commercial",
    "hlm": "hlm",
}
# Titles and common words, expanded anywhere in a name.
WORDS = {
    "st": "saint",
    "ste": "sainte",
    "sts": "saints",
    "stes": "saintes",
    "gen": "general",
    "gal": "general",
    "gl": "general",
    "mal": "marechal",
    "mar": "marechal",
    "pdt": "president",
    "pres": "president",
    "dr": "docteur",
    "doct": "docteur",
    "prof": "professeur",
    "cdt": "commandant",
    "lt": "lieutenant",
    "mgr": "monseigneur",
    "gde": "grande",
    "gd": "grand",
    "grd": "grand",
    "vx": "vieux",
    "ctre": "centre",
    "ccial": "commercial",
    "cial": "commercial",
    "nd": "notre dame",
}
# Articles carry no information for matching and are often dropped or mangled in real inputs.
STOPWORDS = frozenset({"de", "du", "des", "la", "le", "les", "l", "d", "et", "a", "au", "aux"})
SUFFIXES = {
    "bis": "bis",
    "b": "bis",
    "ter": "ter",
    "t": "ter",
    "quater": "quater",
    "q": "quater",
    "quinquies": "quinquies",
    "a": "a",
    "c": "c",
    "d": "d",
}
TYPE_WORDS = (
    frozenset(STREET_TYPES)
    | frozenset(STREET_TYPES.values())
    | {
        "cite",
        "voie",
        "chaussee",
        "ruelle",
        "sente",
        "venelle",
        "parvis",
        "rond",
        "zone",
        "za",
        "zi",
        "zac",
        "domaine",
        "lieu",
        "lieudit",
        "ld",
        "quartier",
        "hameau",
        "village",
        "clos",
        "cour",
        "parc",
        "mail",
        "port",
        "pont",
        "digue",
        "route",
    }
)

_POSTAL_NOISE = re.compile(
    r"\b(?:cedex|cdx)(?:\s*\d{1,3})?\b|\b(?:bp|b p|cs|tsa|boite postale)\s*\d+\b", re.I
)
_POSTCODE = re.compile(r"(?<![\d])(\d{5})(?![\d])")
_NUMBER = re.compile(
    r"^(?:n|no|numero)?\s*(\d{1,5})\s*(bis|ter|quater|quinquies|[a-z](?![a-z]))?\b\s*(.*)$"
)
_ORDINAL = re.compile(r"\b0*(\d+)\s*(?:er|e|eme|em|ieme)\b")


def fold(text: str) -> str:
    """Lower case, accents removed, apostrophes/hyphens/dots as spaces; commas kept."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = re.sub(r"[^a-z0-9,]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _tokens(text: str) -> list[str]:
    return fold(text).replace(",", " ").split()


def street_key(name: str) -> str:
    """Matching key of a street or lieu-dit name: expanded abbreviations, no articles."""
    words = _tokens(name)
    if words and words[0] in ("lieu", "lieudit", "ld"):
        words = words[2:] if words[0] == "lieu" and words[1:2] == ["dit"] else words[1:]
    out: list[str] = []
    for w in words:
        # The street type is the first word kept (after a leading article, "L'AV" → avenue):
        # keyed on the raw position, "A/R" gave "r" and then "rue" — not idempotent.
        if not out and w in STREET_TYPES:
            out.extend(STREET_TYPES[w].split())
        elif w in WORDS:
            out.extend(WORDS[w].split())
        elif w not in STOPWORDS:
            out.append(w)
    return " ".join(out)


@functools.lru_cache(maxsize=65536)
def commune_key(name: str) -> str:
    """Matching key of a commune name ("PARIS 05", "Paris 5e Arrondissement" → "paris 5")."""
    text = _ORDINAL.sub(r"\1", fold(name).replace(",", " "))
    text = re.sub(r"\barrondissement\b|\bcedex\b", " ", text)
    words = [WORDS.get(w, w) for w in text.split() if w not in STOPWORDS]
    return " ".join(re.sub(r"^0+(\d)", r"\1", w) for w in words)


def suffix_key(suffix: str | None) -> str | None:
    """Canonical repetition index: bis/ter/quater/quinquies or a letter."""
    if not suffix:
        return None
    s = fold(suffix).replace(" ", "")
    return SUFFIXES.get(s, s) or None


@dataclass
class ParsedAddress:
    """A free-text address split into its parts (all keys normalised)."""

    number: int | None = None
    suffix: str | None = None
    street: str = ""
    street_key: str = ""
    postcode: str | None = None
    city: str = ""
    city_key: str = ""
    lieu_dit: bool = False
    # Trailing words of the street that may be a commune name when no comma separates it.
    tails: list[tuple[int, str]] = field(default_factory=list)

    def key(self) -> str:
        """A canonical text for the cache and for determinism checks."""
        return "|".join(
            [
                str(self.number or ""),
                self.suffix or "",
                self.street_key,
                self.postcode or "",
                self.city_key,
                "ld" if self.lieu_dit else "",
            ]
        )


def _split_number(segment: str) -> tuple[int | None, str | None, str]:
    m = _NUMBER.match(segment)
    if not m:
        return None, None, segment
    number, suffix, rest = int(m.group(1)), m.group(2), m.group(3).strip()
    if suffix and len(suffix) == 1:
        # "1 r joffre": a lone letter that starts the street is the street type, not a suffix.
        glued = re.match(r"^(?:n|no|numero)?\s*\d+[a-z]\b", segment) is not None
        if not glued and (suffix not in SUFFIXES or not rest):
            rest = (suffix + " " + rest).strip()
            suffix = None
    # "12-14 rue …", "12 et 14 rue …": keep the first number only.
    rest = re.sub(r"^(?:(?:a|et|au)\s+)?\d{1,4}\s*(?:bis|ter)?\s+(?=[a-z])", "", rest)
    if not rest:
        return None, None, segment
    return number, suffix_key(suffix), rest


def parse(text: str, postcode: str | None = None, city: str | None = None) -> ParsedAddress:
    """Split a free-text address into number, suffix, street, postcode and commune."""
    p = ParsedAddress()
    raw = fold(text or "")
    raw = _POSTAL_NOISE.sub(" ", raw)
    if postcode and _POSTCODE.fullmatch(postcode.strip()):
        p.postcode = postcode.strip()
    if city:
        p.city = city
    # The last 5-digit group is the postcode; what follows it in its segment is the commune.
    matches = list(_POSTCODE.finditer(raw))
    if matches:
        m = matches[-1]
        if not p.postcode:
            p.postcode = m.group(1)
        before, after = raw[: m.start()], raw[m.end() :]
        after_seg = after.split(",")[0].strip()
        if after_seg and not p.city:
            p.city = after_seg
            after = after[len(after.split(",")[0]) :]
        raw = (before + " , " + after).strip()
    segments = [s.strip() for s in raw.split(",") if s.strip()]
    if not p.city and len(segments) > 1 and not re.search(r"\d", segments[-1]):
        p.city = segments.pop()
    # The street segment: one starting with a number, else one starting with a street type.
    street_seg = next((s for s in segments if _NUMBER.match(s)), "")
    if not street_seg:
        street_seg = next((s for s in segments if s.split()[0] in TYPE_WORDS), "")
    if not street_seg and segments:
        street_seg = segments[0]
    # A complement before the street ("residence les lilas 3 rue …"): start at the number.
    m2 = re.search(r"\b(\d{1,5})\s*(?:bis|ter|[a-z])?\s+(?:" + _TYPE_RE + r")\b", street_seg)
    if m2 and m2.start() > 0 and not _NUMBER.match(street_seg):
        street_seg = street_seg[m2.start() :]
    if re.match(r"^(lieu dit|lieudit|ld)\b", street_seg):
        p.lieu_dit = True
    p.number, p.suffix, p.street = _split_number(street_seg)
    p.street_key = street_key(p.street)
    p.city_key = commune_key(p.city) if p.city else ""
    if not p.city:
        words = p.street_key.split()
        for k in range(1, min(4, len(words)) + 1):
            p.tails.append((k, commune_key(" ".join(words[-k:]))))
    return p


_TYPE_RE = "|".join(sorted((re.escape(w) for w in TYPE_WORDS if len(w) > 1), key=len, reverse=True))


# -- parser-free analysis ----------------------------------------------------------------------
# Complement words: they and the identifier that follows them ("bat b", "2e etage", "appt 12")
# name a part of a building, never the street; dropped wherever they stand in the query.
COMPLEMENT_WORDS = frozenset(
    {
        "bat",
        "bt",
        "batiment",
        "batiments",
        "bats",
        "esc",
        "escalier",
        "etage",
        "etg",
        "appartement",
        "appart",
        "appt",
        "apt",
        "app",
        "porte",
        "entree",
        "ent",
        "hall",
        "cellule",
        "bureau",
        "bureaux",
        "bur",
        "local",
        "lot",
        "box",
        "niveau",
        "aile",
        "pavillon",
        "tour",
        "bloc",
        "case",
        "secteur",
        "unite",
        "salle",
        "stand",
        "module",
    }
)
# Postal-distribution words followed by a number ("bp 80039", "cs 50014", "cedex 2").
_POSTAL_WORDS = frozenset({"bp", "cs", "tsa", "cedex", "cdx", "sp"})
_ORDINAL_WORD = re.compile(r"^\d{1,3}(?:er|ere|e|eme|em|ieme|nd|nde)$")
_NUM_TOKEN = re.compile(r"^(\d{1,4})(bis|ter|quater|quinquies|[a-z])?$")
_SUFFIX_WORDS = frozenset({"bis", "ter", "quater", "quinquies", "b", "t", "q"})


@dataclass
class Analysis:
    """A query as tokens, with every reading kept: numbers, postcodes, words (no parse gate)."""

    words: list[str]  # matching words in order (abbreviations expanded, articles dropped)
    postcodes: list[str]
    number: int | None = None
    suffix: str | None = None
    numbers: list[int] = field(default_factory=list)  # every other house-number candidate
    lieu_dit: bool = False
    number_pos: int | None = None  # where a number with no word after it stood in `words`

    @property
    def text(self) -> str:
        """The words as one string (trigram search text)."""
        return " ".join(self.words)

    def key(self) -> str:
        """A canonical text for the cache and for determinism checks."""
        return "|".join(
            [
                str(self.number or ""),
                self.suffix or "",
                self.text,
                ",".join(self.postcodes),
                "ld" if self.lieu_dit else "",
            ]
        )


def analyse(text: str, postcode: str | None = None, city: str | None = None) -> Analysis:
    """Tokens of a free-text address in any order and punctuation (see `Analysis`)."""
    raw = fold(" ".join(x for x in (text or "", city or "") if x))
    raw = re.sub(r"\bboite postale\b", "bp", raw)
    raw = re.sub(r"\bc o\b", "co", raw)  # "c/o"
    raw = re.sub(r"\b(\d+) (er|e|eme|ieme)\b", r"\1\2", raw)  # "2 e etage"
    raw = re.sub(r"\brez de chaussee\b|\brdc\b", " , ", raw)
    tokens = raw.replace(",", " , ").split()
    out = Analysis(words=[], postcodes=[])
    if postcode and _POSTCODE.fullmatch(postcode.strip()):
        out.postcodes.append(postcode.strip())
    words: list[str] = []
    after_number = True  # at a segment start, a street type may come first
    i = 0
    n = len(tokens)
    while i < n:
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else ""
        if t == ",":
            after_number = True
            i += 1
            continue
        if re.fullmatch(r"\d{5}", t):
            if t not in out.postcodes:
                out.postcodes.append(t)
            after_number = True
            i += 1
            continue
        if t in _POSTAL_WORDS and (nxt.isdigit() or t in ("cedex", "cdx")):
            i += 2 if nxt.isdigit() else 1
            continue
        if t in ("chez", "co"):
            # "chez M. Dupont", "c/o Mairie": a name up to the next number or comma.
            i += 1
            while i < n and tokens[i] != "," and not tokens[i][:1].isdigit():
                i += 1
            continue
        if _ORDINAL_WORD.match(t) and nxt in ("arrondissement", "arr", "arrt"):
            words.append(re.sub(r"\D", "", t).lstrip("0"))  # "13e arrondissement": a commune
            i += 2
            continue
        if _ORDINAL_WORD.match(t) and nxt in ("etage", "etg", "et", "sous", "ss"):
            i += 2
            continue
        if t in COMPLEMENT_WORDS and nxt and nxt != ",":
            ident = re.fullmatch(r"[a-z]?\d{0,4}[a-z]?", nxt) is not None and len(nxt) <= 4
            if ident or _ORDINAL_WORD.match(nxt):
                i += 2
                continue
            if t in ("etage", "etg"):
                i += 1
                continue
        if t in ("lieu", "lieudit", "ld") and (t != "lieu" or nxt == "dit"):
            out.lieu_dit = True
            i += 2 if t == "lieu" else 1
            after_number = True
            continue
        m = _NUM_TOKEN.match(t)
        if m:
            num, suffix = int(m.group(1)), m.group(2)
            j = i + 1
            if suffix is None and nxt in _SUFFIX_WORDS | {"a", "c", "d"}:
                after = tokens[i + 2] if i + 2 < n else ""
                # "12 b rue x" → bis; "1 r joffre" → street type; "12 a rue" → letter.
                if nxt in ("bis", "ter", "quater", "quinquies") or (
                    after and after != "," and after not in STOPWORDS and not after[:1].isdigit()
                ):
                    if nxt not in ("r",):
                        suffix, j = nxt, i + 2
            # "12-14", "12 et 14", "12 a 14": the first number is the address.
            while j < n and (
                re.fullmatch(r"\d{1,4}[a-z]?", tokens[j])
                or (tokens[j] in ("et", "a", "au") and j + 1 < n and tokens[j + 1].isdigit())
            ):
                if tokens[j] in ("et", "a", "au"):
                    j += 1
                j += 1
            k = j + 1 if j < n and tokens[j] == "," else j  # "12, rue de la Paix"
            followed_by_word = k < n and tokens[k] != "," and not tokens[k][:1].isdigit()
            if out.number is None and followed_by_word:
                out.number, out.suffix = num, suffix_key(suffix)
                i = j
                after_number = True
                continue
            out.numbers.append(num)
            words.append(str(num))
            i += 1
            after_number = False
            continue
        if after_number and t in STREET_TYPES:
            words.extend(STREET_TYPES[t].split())
        elif t in WORDS:
            words.extend(WORDS[t].split())
        elif t not in STOPWORDS:
            words.append(t)
        after_number = t in COMPLEMENT_WORDS
        i += 1
    if out.number is None and out.numbers:
        # A number with no word after it ("rue x 12"): the house number still.
        out.number = out.numbers.pop(0)
        out.number_pos = words.index(str(out.number))
        words.remove(str(out.number))
    out.words = words
    return out
