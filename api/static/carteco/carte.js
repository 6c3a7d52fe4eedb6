/* Carteco public map: MapLibre GL on Carteco's own vector tiles (no CDN, no glyphs, no sprite).
 * State (view, filters, open card) lives in the page URL so a view can be shared. */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("cc-config").textContent);
  const $ = (id) => document.getElementById(id);
  const origin = window.location.origin;
  // as_of (AAAA-MM-JJ): the registry at a past date, read by the tiles from the history.
  const FILTERS = ["secteur", "famille", "territoire", "as_of"];
  // Positions known only to the commune (its centre) are drawn apart from exact ones.
  const COMMUNE_LEVEL = "municipality";
  const POINT_LAYERS = ["points", "points-commune"];
  const PRECISION = {
    provided: "position fournie par la source", housenumber: "adresse exacte",
    street: "rue (approximative)", locality: "lieu-dit (approximative)",
    municipality: "centre de la commune (très approximative)", manual: "placée à la main",
  };

  // ---- state <-> URL -------------------------------------------------------------------------
  const params = new URLSearchParams(window.location.search);
  const state = { fiche: params.get("fiche") ? parseInt(params.get("fiche"), 10) : null };
  for (const k of FILTERS) state[k] = params.get(k) || (config.preset || {})[k] || "";
  if (config.locked) state.territoire = config.locked.level + ":" + config.locked.code;

  function filterQuery() {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (state[k]) q.set(k, state[k]);
    return q;
  }
  function writeURL() {
    const q = new URLSearchParams(window.location.search);
    for (const k of FILTERS) {
      if (state[k] && !(config.locked && k === "territoire")) q.set(k, state[k]); else if (!config.locked || k !== "territoire") q.delete(k);
    }
    if (map) {
      const c = map.getCenter();
      q.set("z", map.getZoom().toFixed(2));
      q.set("lat", c.lat.toFixed(5));
      q.set("lon", c.lng.toFixed(5));
    }
    if (state.fiche) q.set("fiche", String(state.fiche)); else q.delete("fiche");
    const url = window.location.pathname + "?" + q.toString();
    if (url !== window.location.pathname + window.location.search) window.history.replaceState(null, "", url);
  }

  // ---- colours -------------------------------------------------------------------------------
  const colours = {};
  for (const s of config.sectors) colours[s.code] = s.color;
  const colourExpr = ["match", ["get", "sector"]];
  for (const s of config.sectors) colourExpr.push(s.code, s.color);
  colourExpr.push("#777777");

  // ---- style ---------------------------------------------------------------------------------
  function tileURL(template, layer) {
    return origin + template.replace("{layer}", layer);
  }
  // A static PMTiles archive (carteco tiles export) replaces the live endpoint when configured.
  const archive = config.pmtiles ? "pmtiles://" + new URL(config.pmtiles, origin).href : null;
  if (archive) {
    const protocol = new pmtiles.Protocol();
    maplibregl.addProtocol("pmtiles", protocol.tile);
  }
  function structuresTiles() {
    const q = filterQuery().toString();
    return [origin + config.structuresTiles + (q ? "?" + q : "")];
  }
  function ownStyle() {
    const vt = (layer, minzoom, maxzoom) => archive ? { type: "vector", url: archive } : ({
      type: "vector", tiles: [tileURL(config.territoryTiles, layer)], minzoom, maxzoom,
    });
    return {
      version: 8,
      sources: { departements: vt("departements", 0, 14), communes: vt("communes", 7, 16) },
      layers: [
        { id: "fond", type: "background", paint: { "background-color": "#eef0ea" } },
        { id: "departements-fond", type: "fill", source: "departements", "source-layer": "departements",
          paint: { "fill-color": "#f8f8f4" } },
        { id: "communes", type: "line", source: "communes", "source-layer": "communes", minzoom: 8,
          paint: { "line-color": "#c9cec2", "line-width": 0.6 } },
        { id: "departements", type: "line", source: "departements", "source-layer": "departements",
          paint: { "line-color": "#7d8776", "line-width": 1.2 } },
      ],
    };
  }

  const v = config.view;
  const startZoom = params.get("z") ? parseFloat(params.get("z")) : v.zoom;
  const startCenter = params.get("lat") && params.get("lon")
    ? [parseFloat(params.get("lon")), parseFloat(params.get("lat"))] : [v.lon, v.lat];
  const mapOptions = {
    container: "cc-map",
    style: config.basemap || ownStyle(),
    center: startCenter, zoom: startZoom, maxZoom: 18,
    attributionControl: { compact: true, customAttribution: config.attribution },
    cooperativeGestures: !!config.embed,
  };
  let lockedBounds = null;
  if (config.locked) {
    const [w, s, e, n] = config.locked.bbox;
    const dx = (e - w) * 0.15, dy = (n - s) * 0.15;
    lockedBounds = [[w - dx, s - dy], [e + dx, n + dy]];
    mapOptions.maxBounds = lockedBounds;
    if (!params.get("z")) { delete mapOptions.center; delete mapOptions.zoom; mapOptions.bounds = [[w, s], [e, n]]; mapOptions.fitBoundsOptions = { padding: 20 }; }
  }
  const map = new maplibregl.Map(mapOptions);
  window.ccMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");

  function addOverlays() {
    if (config.locked) {
      map.addSource("verrou", { type: "geojson", data: { type: "Feature", geometry: config.locked.outline, properties: {} } });
      map.addLayer({ id: "verrou", type: "line", source: "verrou", paint: { "line-color": "#1a5e20", "line-width": 2.5 } });
    }
    setStructuresSource();
  }

  // The static archive holds the unfiltered layer; a filtered view (a preset, a territory
  // lock, a choice in the form) reads the live tiles, which apply the filters in PostGIS.
  let readingArchive = null;
  function setStructuresSource() {
    const wantArchive = !!archive && !FILTERS.some((k) => state[k]);
    const src = map.getSource("structures");
    if (src && wantArchive === readingArchive) {
      if (!wantArchive) src.setTiles(structuresTiles());
      return;
    }
    for (const id of ["selection", ...POINT_LAYERS, "clusters"]) if (map.getLayer(id)) map.removeLayer(id);
    if (src) map.removeSource("structures");
    map.addSource("structures", wantArchive ? { type: "vector", url: archive }
      : { type: "vector", tiles: structuresTiles(), minzoom: 0, maxzoom: 16 });
    readingArchive = wantArchive;
    addStructureLayers();
  }
  function addStructureLayers() {
    map.addLayer({
      id: "clusters", type: "circle", source: "structures", "source-layer": "structures",
      filter: [">", ["get", "count"], 1],
      paint: {
        "circle-color": colourExpr, "circle-opacity": 0.85,
        "circle-radius": ["interpolate", ["linear"], ["get", "count"], 2, 11, 20, 16, 200, 24, 2000, 32],
        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.5,
      },
    });
    // Honest precision on the marker itself: a structure placed at its commune's centre is a
    // hollow ring in its sector colour, an exactly placed one a filled disc (see the legend).
    map.addLayer({
      id: "points", type: "circle", source: "structures", "source-layer": "structures",
      filter: ["all", ["==", ["get", "count"], 1], ["!=", ["get", "precision"], COMMUNE_LEVEL]],
      paint: {
        "circle-color": colourExpr,
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 6, 4, 14, 7],
        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.2,
      },
    });
    map.addLayer({
      id: "points-commune", type: "circle", source: "structures", "source-layer": "structures",
      filter: ["all", ["==", ["get", "count"], 1], ["==", ["get", "precision"], COMMUNE_LEVEL]],
      paint: {
        "circle-color": "#ffffff",
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 6, 4, 14, 7],
        "circle-stroke-color": colourExpr, "circle-stroke-width": 2.5,
      },
    });
    map.addLayer({
      id: "selection", type: "circle", source: "structures", "source-layer": "structures",
      filter: ["==", ["get", "id"], state.fiche || -1],
      paint: { "circle-radius": 11, "circle-color": "rgba(0,0,0,0)", "circle-stroke-color": "#111", "circle-stroke-width": 3 },
    });
  }

  // ---- HTML labels for cluster counts (no glyphs needed) ----------------------------------------
  let labels = [];
  function updateLabels() {
    for (const m of labels) m.remove();
    labels = [];
    const seen = new Set();
    let rendered = 0;
    for (const f of map.queryRenderedFeatures({ layers: ["clusters", ...POINT_LAYERS] })) {
      const key = f.geometry.coordinates.join(",");
      if (seen.has(key)) continue;  // the same feature drawn in a neighbour tile's buffer
      seen.add(key);
      rendered += f.properties.count;
      if (f.layer.id !== "clusters") continue;
      const el = document.createElement("div");
      el.className = "cc-etiquette";
      el.textContent = f.properties.count;
      el.setAttribute("aria-hidden", "true");
      labels.push(new maplibregl.Marker({ element: el }).setLngLat(f.geometry.coordinates).addTo(map));
    }
    document.body.dataset.rendered = String(rendered);
  }

  // ---- card ----------------------------------------------------------------------------------
  const fiche = $("cc-fiche");
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }
  async function openCard(id) {
    const r = await fetch("/carte/structures/" + id + ".json");
    if (!r.ok) { closeCard(); return; }
    const d = await r.json();
    state.fiche = d.id;
    fiche.replaceChildren();
    const close = el("button", "×", "cc-fermer");
    close.type = "button";
    close.setAttribute("aria-label", "Fermer la fiche");
    close.addEventListener("click", closeCard);
    fiche.appendChild(close);
    fiche.appendChild(el("h2", d.name));
    const ul = el("ul", null, "cc-secteurs");
    ul.setAttribute("aria-label", "Secteurs");
    for (const s of d.sectors) { const li = el("li", s.label); li.style.background = s.color; ul.appendChild(li); }
    fiche.appendChild(ul);
    fiche.appendChild(el("p", "Famille de l’ESS : " + d.family_label + (d.esus ? " · agréée ESUS" : "")));
    const adr = [d.address_line, [d.postcode, d.commune_name].filter(Boolean).join(" ")].filter(Boolean).join(", ");
    if (adr) fiche.appendChild(el("p", adr, "cc-adresse"));
    if (d.description) fiche.appendChild(el("p", d.description));
    if (d.website) {
      const p = el("p"); const a = el("a", d.website.replace(/^https?:\/\//, ""));
      if (/^https?:\/\//.test(d.website)) { a.href = d.website; a.rel = "noopener"; a.target = "_blank"; }
      p.appendChild(a); fiche.appendChild(p);
    }
    fiche.appendChild(el("p", "Localisation : " + d.precision_label, "cc-precision" + (d.approximate ? " cc-approx" : "")));
    const sig = el("a", "Signaler une erreur");
    sig.className = "cc-signaler";
    sig.href = "mailto:?subject=" + encodeURIComponent("Carteco : erreur sur la fiche n°" + d.id + " (" + d.name + ")") +
      "&body=" + encodeURIComponent("Fiche : " + origin + "/carte?fiche=" + d.id + "\nSource : " + d.source + "\n\nCe qui est faux :\n");
    const ps = el("p"); ps.appendChild(sig); fiche.appendChild(ps);
    fiche.hidden = false;
    document.body.dataset.fiche = String(d.id);
    if (map.getLayer("selection")) map.setFilter("selection", ["==", ["get", "id"], d.id]);
    writeURL();
    return d;
  }
  function closeCard() {
    fiche.hidden = true;
    state.fiche = null;
    delete document.body.dataset.fiche;
    if (map.getLayer("selection")) map.setFilter("selection", ["==", ["get", "id"], -1]);
    writeURL();
  }
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !fiche.hidden) closeCard(); });

  // ---- list of structures in view --------------------------------------------------------------
  const liste = $("cc-liste");
  let listeSeq = 0;
  async function refreshList() {
    const seq = ++listeSeq;
    const b = map.getBounds();
    const q = filterQuery();
    const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
    q.set("bbox", [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)].map((x) => x.toFixed(6)).join(","));
    q.set("limit", "100");
    const r = await fetch("/carte/liste?" + q.toString());
    if (!r.ok || seq !== listeSeq) return;
    const d = await r.json();
    liste.replaceChildren();
    for (const s of d.items) {
      const li = document.createElement("li");
      const b = el("button");
      b.type = "button";
      b.dataset.id = s.id;
      b.setAttribute("aria-label", s.name + (s.commune ? ", " + s.commune : "") + (s.sectors.length ? ", " + s.sectors.map((x) => x.label).join(", ") : "") + " : ouvrir la fiche");
      b.appendChild(el("span", s.name));
      b.appendChild(document.createElement("br"));
      b.appendChild(el("small", [s.commune, s.sectors.map((x) => x.label).join(", ")].filter(Boolean).join(" · ")));
      b.addEventListener("click", () => openCard(s.id));
      li.appendChild(b);
      liste.appendChild(li);
    }
    const more = d.total > d.items.length ? " (100 premières affichées)" : "";
    $("cc-compte").textContent = "(" + d.total + ")" + more;
    document.body.dataset.listed = String(d.total);
  }
  liste.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const buttons = Array.from(liste.querySelectorAll("button"));
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    const next = buttons[Math.max(0, Math.min(buttons.length - 1, i + (e.key === "ArrowDown" ? 1 : -1)))];
    next.focus();
  });

  // ---- filters ---------------------------------------------------------------------------------
  for (const k of FILTERS) {
    const sel = $("cc-" + k);
    if (!sel) continue;
    sel.value = state[k];
    sel.addEventListener("change", () => { state[k] = sel.value; applyFilters(); });
  }
  function applyFilters() {
    // Set back to 1 by the next idle (tests wait on it): the structures are drawn again.
    document.body.dataset.ready = "0";
    setStructuresSource();
    writeURL();
    const sel = $("cc-territoire");
    const opt = sel && sel.selectedOptions[0];
    if (state.territoire && opt && opt.dataset.bbox) {
      const [w, s, e, n] = opt.dataset.bbox.split(",").map(Number);
      map.fitBounds([[w, s], [e, n]], { padding: 20 });  // moveend refreshes the list
    } else {
      refreshList();
    }
  }

  // ---- search ----------------------------------------------------------------------------------
  const input = $("cc-q"), results = $("cc-resultats");
  // Enter picks a result (keydown handler below); the form itself never submits.
  input.form.addEventListener("submit", (e) => e.preventDefault());
  let searchSeq = 0, active = -1, items = [];
  function choose(item) {
    results.hidden = true; input.setAttribute("aria-expanded", "false");
    input.value = item.label;
    if (item.type === "lieu") map.fitBounds([[item.bbox[0], item.bbox[1]], [item.bbox[2], item.bbox[3]]], { padding: 30, maxZoom: 15 });
    else if (item.type === "adresse") map.flyTo({ center: [item.lon, item.lat], zoom: 16 });
    else {
      // A structure not located yet has no place to fly to; its card says "non localisée".
      if (item.lon != null && item.lat != null) map.flyTo({ center: [item.lon, item.lat], zoom: 15 });
      openCard(item.id);
    }
  }
  function renderResults() {
    results.replaceChildren();
    items.forEach((it, i) => {
      const li = el("li");
      li.id = "cc-r" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      li.appendChild(el("span", it.label + " "));
      const kind = it.type === "lieu" ? "lieu" : it.type === "adresse" ? "adresse" : "structure";
      li.appendChild(el("small", kind + (it.count > 1 ? " · " + it.count + " fiches identiques" : "")));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(it); });
      results.appendChild(li);
    });
    results.hidden = items.length === 0;
    input.setAttribute("aria-expanded", items.length ? "true" : "false");
    if (active >= 0) input.setAttribute("aria-activedescendant", "cc-r" + active); else input.removeAttribute("aria-activedescendant");
  }
  async function search() {
    const q = input.value.trim();
    const seq = ++searchSeq;
    if (q.length < 2) { items = []; renderResults(); return; }
    const found = [];
    // The view centre ranks equally good matches by distance.
    const c = map.getCenter();
    const sq = new URLSearchParams({ q: q, lon: c.lng.toFixed(5), lat: c.lat.toFixed(5) });
    const r = await fetch("/carte/recherche?" + sq.toString());
    if (r.ok) { const d = await r.json(); found.push(...d.lieux, ...d.structures); }
    if (config.ban && q.length >= 3) {
      try {
        const b = await fetch("/ban/search/?limit=4&q=" + encodeURIComponent(q));
        if (b.ok) {
          const d = await b.json();
          for (const f of d.features || []) {
            found.push({ type: "adresse", label: f.properties.label, lon: f.geometry.coordinates[0], lat: f.geometry.coordinates[1] });
          }
        }
      } catch (e) { /* the address engine is optional */ }
    }
    if (seq !== searchSeq) return;
    items = found; active = -1; renderResults();
  }
  let searchTimer = null;
  input.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(search, 200); });
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      if (!items.length) return;
      active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      renderResults();
    } else if (e.key === "Enter") {
      e.preventDefault();
      if (items.length) choose(items[Math.max(active, 0)]);
    } else if (e.key === "Escape") { items = []; renderResults(); }
  });
  input.addEventListener("blur", () => setTimeout(() => { results.hidden = true; }, 150));

  // ---- phone: panel toggle ---------------------------------------------------------------------
  const toggle = $("cc-toggle");
  toggle.addEventListener("click", () => {
    const app = $("cc-app");
    const open = app.classList.toggle("cc-ouvert");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    map.resize();
  });

  // ---- events ----------------------------------------------------------------------------------
  let overlaysAdded = false;
  function onStyle() {
    if (overlaysAdded) return;
    overlaysAdded = true;
    addOverlays();
  }
  map.on("load", onStyle);
  map.on("click", "clusters", (e) => {
    const f = e.features[0];
    map.easeTo({ center: f.geometry.coordinates, zoom: Math.min(map.getZoom() + 2, 16) });
  });
  for (const layer of POINT_LAYERS) map.on("click", layer, (e) => { openCard(e.features[0].properties.id); });
  for (const layer of ["clusters", ...POINT_LAYERS]) {
    map.on("mouseenter", layer, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", layer, () => { map.getCanvas().style.cursor = ""; });
  }
  let moveTimer = null;
  map.on("moveend", () => {
    writeURL();
    clearTimeout(moveTimer);
    moveTimer = setTimeout(refreshList, 150);
  });
  map.on("idle", () => {
    updateLabels();
    document.body.dataset.ready = "1";
  });
  map.once("load", () => {
    refreshList();
    if (state.fiche) openCard(state.fiche);
  });
})();
