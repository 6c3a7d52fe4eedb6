// Draws the diagnostic report's maps with Leaflet from the page's JSON data blocks (script
// elements of type application/json whose data-carte attribute names the map's div). Constant
// code: imported names only arrive as JSON data, shown with textContent, never parsed as HTML.
(function () {
  "use strict";

  function infobulle(labels, values) {
    var table = document.createElement("table");
    labels.forEach(function (label, i) {
      var tr = document.createElement("tr");
      var th = document.createElement("th");
      var td = document.createElement("td");
      th.textContent = label;
      td.textContent = values[i];
      tr.appendChild(th);
      tr.appendChild(td);
      table.appendChild(tr);
    });
    var div = document.createElement("div");
    div.appendChild(table);
    return div;
  }

  function couche(spec) {
    if (spec.lines) {
      return L.layerGroup(spec.lines.map(function (line) {
        return L.polyline(line, spec.style);
      }));
    }
    var options = {
      style: function (f) { return Object.assign({}, spec.style, f.properties.s); }
    };
    if (spec.circle) {
      options.pointToLayer = function (f, latlng) {
        return L.circleMarker(latlng, Object.assign({}, spec.circle, spec.style, f.properties.s));
      };
    }
    var layer = L.geoJSON(spec.features, options);
    if (spec.tooltip) {
      layer.bindTooltip(function (l) {
        return infobulle(spec.tooltip, l.feature.properties.t);
      }, { sticky: true, className: "carte-infobulle" });
    }
    return layer;
  }

  // The shared basemap (no tile server: the page is read and printed offline): neighbouring
  // outlines drawn in a pane under the data, place names in a pane above it that lets the
  // pointer through.
  var fondNode = document.getElementById("fond-de-carte");
  var fond = fondNode ? JSON.parse(fondNode.textContent) : { layers: [], labels: [] };

  function nom(label) {
    var span = document.createElement("span");
    span.className = "carte-nom carte-nom-" + label.kind;
    span.textContent = label.text;
    return L.marker([label.lat, label.lon], {
      pane: "noms",
      interactive: false,
      keyboard: false,
      icon: L.divIcon({ className: "carte-nom-icone", html: span, iconSize: null })
    });
  }

  // Place names in priority order, each hidden when it would overlap one already shown.
  function desencombrer(markers) {
    var shown = [];
    markers.forEach(function (m) {
      var el = m.getElement();
      if (!el) return;
      el.style.visibility = "";
      var r = el.firstChild.getBoundingClientRect();
      var clash = shown.some(function (s) {
        return r.left < s.right + 2 && r.right + 2 > s.left && r.top < s.bottom && r.bottom > s.top;
      });
      if (clash) el.style.visibility = "hidden"; else shown.push(r);
    });
  }

  function legende(entries) {
    var control = L.control({ position: "bottomright" });
    control.onAdd = function () {
      var div = L.DomUtil.create("div", "carte-legende");
      entries.forEach(function (e) {
        var row = document.createElement("div");
        var mark = document.createElement("i");
        mark.className = "carte-legende-" + e.shape;
        if (e.shape === "line" || e.shape === "dash") mark.style.borderTopColor = e.colour;
        else if (e.shape === "ring") mark.style.borderColor = e.colour;
        else mark.style.background = e.colour;
        // A proportional symbol: drawn at the diameter it has on the map.
        if (e.size) {
          mark.style.width = e.size + "px";
          mark.style.height = e.size + "px";
        }
        row.appendChild(mark);
        row.appendChild(document.createTextNode(e.label));
        div.appendChild(row);
      });
      L.DomEvent.disableClickPropagation(div);
      return div;
    };
    return control;
  }

  document.querySelectorAll("script[data-carte]").forEach(function (node) {
    var data = JSON.parse(node.textContent);
    var map = L.map(node.getAttribute("data-carte"), {
      center: [46.5, 2.5],
      zoom: 9,
      zoomSnap: 0.25, // fractional zoom: the département fills the frame
      zoomDelta: 0.5
    });
    map.createPane("fond").style.zIndex = 250;
    var noms = map.createPane("noms");
    noms.style.zIndex = 450;
    noms.style.pointerEvents = "none";
    L.control.scale({ imperial: false }).addTo(map);
    if (data.bounds) map.fitBounds(data.bounds);
    fond.layers.forEach(function (spec) {
      L.geoJSON(spec.features, { pane: spec.pane, style: spec.style, interactive: false })
        .addTo(map);
    });
    var markers = fond.labels.map(nom);
    var noms_communes = L.layerGroup(markers).addTo(map);
    var redo = function () { desencombrer(markers); };
    redo();
    map.on("zoomend moveend overlayadd", redo);
    var overlays = {};
    var named = 0;
    data.layers.forEach(function (spec) {
      var layer = couche(spec).addTo(map);
      // Layer names are the report's own French labels (the control writes them as HTML).
      if (spec.name) { overlays[spec.name] = layer; named += 1; }
    });
    if (markers.length) { overlays["Noms de lieux"] = noms_communes; named += 1; }
    if (named) L.control.layers({}, overlays, { collapsed: false }).addTo(map);
    if (data.legend && data.legend.length) legende(data.legend).addTo(map);
  });
})();
