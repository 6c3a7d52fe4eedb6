// Moderation page: the proposed point on a map, draggable; dragging fills the lon/lat fields.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("md-config").textContent);
  const box = document.getElementById("md-map");
  if (!box || !config.point || typeof maplibregl === "undefined") { if (box) box.hidden = true; return; }
  const origin = window.location.origin;
  const vt = (layer, minzoom, maxzoom) => ({
    type: "vector", tiles: [origin + config.territoryTiles.replace("{layer}", layer)], minzoom, maxzoom,
  });
  const map = new maplibregl.Map({
    container: box,
    style: {
      version: 8,
      sources: { departements: vt("departements", 0, 14), communes: vt("communes", 7, 16) },
      layers: [
        { id: "fond", type: "background", paint: { "background-color": "#eef0ea" } },
        { id: "communes", type: "line", source: "communes", "source-layer": "communes",
          paint: { "line-color": "#9aa394", "line-width": 0.8 } },
        { id: "departements", type: "line", source: "departements", "source-layer": "departements",
          paint: { "line-color": "#5d6757", "line-width": 1.4 } },
      ],
    },
    center: config.point, zoom: 13, attributionControl: false,
  });
  const lon = document.getElementById("md-lon");
  const lat = document.getElementById("md-lat");
  const marker = new maplibregl.Marker({ draggable: !!lon, color: "#c62828" }).setLngLat(config.point).addTo(map);
  marker.getElement().setAttribute("aria-label", "Position proposée (glisser pour corriger)");
  marker.on("dragend", () => {
    const p = marker.getLngLat();
    lon.value = p.lng.toFixed(6);
    lat.value = p.lat.toFixed(6);
    document.body.dataset.moved = "1";
  });
  function fromFields() {
    const x = parseFloat(lon.value), y = parseFloat(lat.value);
    if (Number.isFinite(x) && Number.isFinite(y)) marker.setLngLat([x, y]);
  }
  if (lon) { lon.addEventListener("change", fromFields); lat.addEventListener("change", fromFields); }
  map.on("load", () => { document.body.dataset.mapReady = "1"; });
  window.cartecoModeration = { map, marker };
})();
