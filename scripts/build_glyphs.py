"""Build the offline basemap's glyphs: MapLibre SDF glyph ranges (PBF) from an open font.

Run by scripts/build-glyphs.sh (which installs freetype-py and Debian's fonts-noto-core):

    python scripts/build_glyphs.py /usr/share/fonts/truetype/noto api/static/glyphs

Each glyph is rendered by FreeType at 4x the 24 px em MapLibre expects, then turned into a
signed distance field on the 24 px grid with a 3 px border: a pixel's value is
255 - (64 + 32 x distance in px to the outline, negative inside), so the outline sits at 191
(MapLibre's 0.75 cut). The PBF is the `glyphs.proto` message MapLibre reads (stacks → one
fontstack → glyphs with id, bitmap, width, height, left, top, advance).
"""

from __future__ import annotations

import sys
from pathlib import Path

import freetype
import numpy as np

EM = 24  # MapLibre's glyph size (px)
BORDER = 3  # SDF border around each glyph bitmap (px)
SCALE = 4  # supersampling of the FreeType rendering
RADIUS = 8.0  # distance (px) spanning the 0–255 range, 64 of it outside the edge
# The Unicode blocks the shipped names use (Latin-1, Latin Extended-A for Œ/œ, punctuation for
# ’ and –); other ranges are answered empty by the server (api/routes/map.py).
RANGES = ((0, 255), (256, 511), (8192, 8447))
FONTS = {"Noto Sans Regular": "NotoSans-Regular.ttf", "Noto Sans Bold": "NotoSans-Bold.ttf"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _uint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(n)


def _sint(field: int, n: int) -> bytes:
    return _key(field, 0) + _varint(2 * n if n >= 0 else -2 * n - 1)  # zigzag


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _sdf(mask: np.ndarray, left_hi: int, top_hi: int) -> tuple[np.ndarray, int, int, int, int]:
    """SDF bitmap (rows x cols, border included), left, top, width and height on the 24 px grid."""
    rows, cols = mask.shape
    x0 = int(np.floor(left_hi / SCALE))
    x1 = int(np.ceil((left_hi + cols) / SCALE))
    ytop = int(np.ceil(top_hi / SCALE))
    ybot = int(np.floor((top_hi - rows) / SCALE))
    width, height = x1 - x0, ytop - ybot
    # Boundary pixels of the hi-res mask (padded so outside neighbours exist).
    pad = np.pad(mask, 1)
    core = pad[1:-1, 1:-1]
    nb_out = (~pad[:-2, 1:-1]) | (~pad[2:, 1:-1]) | (~pad[1:-1, :-2]) | (~pad[1:-1, 2:])
    nb_in = pad[:-2, 1:-1] | pad[2:, 1:-1] | pad[1:-1, :-2] | pad[1:-1, 2:]
    edge_in = np.argwhere(core & nb_out)  # inside pixels touching the outside
    edge_out = np.argwhere(~core & nb_in)  # outside pixels touching the inside

    # Hi-res pixel centres in 24 px units (x right, y up).
    def centres(idx: np.ndarray) -> np.ndarray:
        return np.stack(
            [(left_hi + idx[:, 1] + 0.5) / SCALE, (top_hi - idx[:, 0] - 0.5) / SCALE], axis=1
        )

    pin, pout = centres(edge_in), centres(edge_out)
    ow, oh = width + 2 * BORDER, height + 2 * BORDER
    gx = x0 - BORDER + np.arange(ow) + 0.5
    gy = ytop + BORDER - np.arange(oh) - 0.5
    px, py = np.meshgrid(gx, gy)
    pts = np.stack([px.ravel(), py.ravel()], axis=1)
    # Is each output centre inside the glyph? Sample the hi-res mask there.
    u = np.floor(pts[:, 0] * SCALE - left_hi).astype(int)
    v = np.floor(top_hi - pts[:, 1] * SCALE).astype(int)
    ok = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
    inside = np.zeros(len(pts), dtype=bool)
    inside[ok] = mask[v[ok], u[ok]]

    def nearest(targets: np.ndarray) -> np.ndarray:
        if len(targets) == 0:
            return np.full(len(pts), RADIUS)
        d2 = ((pts[:, None, :] - targets[None, :, :]) ** 2).sum(axis=2)
        return np.sqrt(d2.min(axis=1))

    half = 0.5 / SCALE
    dist = np.where(inside, -(nearest(pout) - half), nearest(pin) - half)
    value = np.clip(255 - (64 + dist * 256 / RADIUS), 0, 255)
    return np.round(value).astype(np.uint8).reshape(oh, ow), x0, ytop, width, height


def glyph_pbf(face: freetype.Face, code: int) -> bytes | None:
    """One glyph message, or None when the font has no glyph for this code point."""
    index = face.get_char_index(code)
    if index == 0 and code != 0:
        return None
    face.load_glyph(index, freetype.FT_LOAD_RENDER | freetype.FT_LOAD_NO_HINTING)
    g = face.glyph
    advance = int(round(g.advance.x / 64 / SCALE))
    bm = g.bitmap
    msg = _uint(1, code)
    if bm.width == 0 or bm.rows == 0:
        return msg + _uint(3, 0) + _uint(4, 0) + _sint(5, 0) + _sint(6, 0) + _uint(7, advance)
    buf = np.array(bm.buffer, dtype=np.uint8).reshape(bm.rows, bm.pitch)[:, : bm.width]
    sdf, left, top, width, height = _sdf(buf >= 128, g.bitmap_left, g.bitmap_top)
    return (
        msg
        + _bytes(2, sdf.tobytes())
        + _uint(3, width)
        + _uint(4, height)
        + _sint(5, left)
        + _sint(6, top - EM)
        + _uint(7, advance)
    )


def range_pbf(face: freetype.Face, name: str, start: int, end: int) -> bytes:
    """The PBF of one glyph range of one font stack."""
    glyphs = b"".join(
        _bytes(3, m) for c in range(start, end + 1) if (m := glyph_pbf(face, c)) is not None
    )
    stack = _bytes(1, name.encode()) + _bytes(2, f"{start}-{end}".encode()) + glyphs
    return _bytes(1, stack)


def build(font_dir: Path, out_dir: Path) -> None:
    """Write <out>/<font stack>/<start>-<end>.pbf for every font and range."""
    for name, file in FONTS.items():
        face = freetype.Face(str(font_dir / file))
        face.set_pixel_sizes(0, EM * SCALE)
        folder = out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for start, end in RANGES:
            (folder / f"{start}-{end}.pbf").write_bytes(range_pbf(face, name, start, end))
            print(f"glyphs: {name} {start}-{end}")


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
