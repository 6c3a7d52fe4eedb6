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

  document.querySelectorAll("script[data-carte]").forEach(function (node) {
    var data = JSON.parse(node.textContent);
    var map = L.map(node.getAttribute("data-carte"), {
      center: [46.5, 2.5],
      zoom: 9,
      zoomSnap: 0.25, // fractional zoom: the département fills the frame
      zoomDelta: 0.5
    });
    L.control.scale().addTo(map);
    if (data.bounds) map.fitBounds(data.bounds);
    var overlays = {};
    var named = 0;
    data.layers.forEach(function (spec) {
      var layer = couche(spec).addTo(map);
      // Layer names are the report's own French labels (the control writes them as HTML).
      if (spec.name) { overlays[spec.name] = layer; named += 1; }
    });
    if (named) L.control.layers({}, overlays, { collapsed: false }).addTo(map);
  });
})();
