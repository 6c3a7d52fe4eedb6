#!/usr/bin/env bash
# Copy the pinned front-end libraries (frontend/package-lock.json) into api/static/vendor, so the
# app serves them itself: no CDN, the map renders offline; and Leaflet into the diagnostics'
# package, which inlines it in each self-contained report. Run after changing frontend/package.json.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
npm ci --no-audit --no-fund
V=../api/static/vendor
L=../carteco/diagnostics/vendor/leaflet
rm -rf "$V" "$L" && mkdir -p "$V/maplibre-gl" "$V/pmtiles" "$V/swagger-ui" "$L"
cp node_modules/maplibre-gl/dist/{maplibre-gl.js,maplibre-gl.css,LICENSE.txt} "$V/maplibre-gl/"
cp node_modules/pmtiles/dist/pmtiles.js "$V/pmtiles/"
cp node_modules/pmtiles/LICENSE "$V/pmtiles/" 2>/dev/null || true
cp -r node_modules/leaflet/dist/{leaflet.js,leaflet.css,images} "$L/"
cp node_modules/leaflet/LICENSE "$L/"
cp node_modules/swagger-ui-dist/{swagger-ui-bundle.js,swagger-ui.css,favicon-32x32.png,LICENSE} "$V/swagger-ui/"
node -e 'const l=require("./package-lock.json").packages;const o={};for(const n of ["maplibre-gl","pmtiles","leaflet","swagger-ui-dist"])o[n]=l["node_modules/"+n].version;console.log(JSON.stringify(o,null,1))' > "$V/versions.json"
echo "vendored: $(cat "$V/versions.json" | tr -d '\n ')"
