#!/usr/bin/env bash
# Rebuild the offline basemap's glyphs (api/static/glyphs/<font>/<range>.pbf, committed) from
# Noto Sans (Debian fonts-noto-core, SIL OFL 1.1). Only needed to change the font or the ranges:
# the committed files are what the app serves.
set -euo pipefail
cd "$(dirname "$0")/.."
FONTS=${CARTECO_GLYPH_FONTS:-/usr/share/fonts/truetype/noto}
if [ ! -f "$FONTS/NotoSans-Regular.ttf" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-core >/dev/null
fi
.venv/bin/pip install -q -e ".[glyphs]"
.venv/bin/python scripts/build_glyphs.py "$FONTS" api/static/glyphs
