// Contributions from the public map (/carte, /embed): "Ajouter un acteur", and on each card
// "Proposer une modification" / "Signaler une fermeture"; the card's contacts, hours, images,
// sources and last update. No third-party script; every text goes in with textContent.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const config = JSON.parse($("cc-config").textContent);
  const panel = $("cc-contrib");
  const form = $("cc-contrib-form");
  if (!panel || !form) return;
  const etat = $("cc-contrib-etat");
  const erreurs = $("cc-contrib-erreurs");
  const titre = $("cc-contrib-titre");
  let formToken = null;
  let marker = null;
  let moved = false;
  let mode = "create";
  let opener = null;
  let chosen = false;  // the marker sits on an address the visitor picked

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  // ---- the card: contacts, hours, images, sources, last update, buttons ---------------------
  const DATE = new Intl.DateTimeFormat("fr-FR", { dateStyle: "long", timeZone: "Europe/Paris" });
  document.addEventListener("carteco:fiche", (ev) => {
    const d = ev.detail.card, fiche = ev.detail.element;
    const dl = el("dl", null, "cc-contacts");
    const row = (label, node) => { dl.appendChild(el("dt", label)); const dd = el("dd"); dd.appendChild(node); dl.appendChild(dd); };
    if (d.phone) { const a = el("a", d.phone); a.href = "tel:" + d.phone.replace(/[^+0-9]/g, ""); row("Téléphone", a); }
    if (d.email) { const a = el("a", d.email); a.href = "mailto:" + d.email; row("Courriel", a); }
    if (d.opening_hours) {
      const box = el("div");
      if (d.opening_hours.open_now != null) {
        box.appendChild(el("p", d.opening_hours.open_now ? "Ouvert maintenant" : "Fermé maintenant",
          d.opening_hours.open_now ? "cc-ouvert" : "cc-ferme"));
      }
      const ul = el("ul", null, "cc-horaires");
      for (const line of d.opening_hours.lines) ul.appendChild(el("li", line));
      box.appendChild(ul);
      row("Horaires", box);
    }
    if (dl.children.length) fiche.appendChild(dl);
    if (d.images && d.images.length) {
      const fig = el("div", null, "cc-images");
      for (const src of d.images) { const img = el("img"); img.src = src; img.alt = ""; img.loading = "lazy"; img.referrerPolicy = "no-referrer"; fig.appendChild(img); }
      fiche.appendChild(fig);
    }
    const meta = [];
    if (d.sources && d.sources.length) meta.push("Source" + (d.sources.length > 1 ? "s" : "") + " : " + d.sources.join(", "));
    if (d.updated_at) meta.push("Mise à jour : " + DATE.format(new Date(d.updated_at)));
    if (meta.length) fiche.appendChild(el("p", meta.join(" · "), "cc-meta"));
    const actions = el("p", null, "cc-proposer");
    const edit = el("button", "Proposer une modification");
    edit.type = "button";
    edit.addEventListener("click", () => openForm("update", d, edit));
    const close = el("button", "Signaler une fermeture");
    close.type = "button";
    close.addEventListener("click", () => openForm("close", d, close));
    actions.append(edit, close);
    fiche.appendChild(actions);
  });

  // ---- the form ----------------------------------------------------------------------------
  const TITLES = { create: "Ajouter un acteur", update: "Proposer une modification", close: "Signaler une fermeture" };
  const FIELDS = ["name", "description", "address_line", "postcode", "commune_name", "ess_family", "phone", "email", "website", "opening_hours"];

  async function getToken() {
    const r = await fetch("/contributions/jeton", { cache: "no-store" });
    formToken = r.ok ? (await r.json()).form_token : null;
  }

  function map() { return window.ccMap || null; }

  function placeMarker(lngLat, fly) {
    const m = map();
    if (!m || typeof maplibregl === "undefined") return;
    if (!marker) {
      marker = new maplibregl.Marker({ draggable: true, color: "#c62828" }).setLngLat(lngLat).addTo(m);
      marker.getElement().setAttribute("aria-label", "Position de la structure (glisser pour corriger)");
      marker.getElement().classList.add("cc-marqueur-contrib");
      marker.on("dragend", () => { moved = true; showPosition(); });
    } else marker.setLngLat(lngLat);
    if (fly) m.flyTo({ center: lngLat, zoom: Math.max(m.getZoom(), 15) });
    showPosition();
  }
  function showPosition() {
    const p = marker.getLngLat();
    $("cc-c-position").textContent = "Position : " + p.lat.toFixed(5) + ", " + p.lng.toFixed(5) + (moved ? " (placée à la main)" : "");
    document.body.dataset.contribPoint = p.lng.toFixed(6) + "," + p.lat.toFixed(6);
  }

  function openForm(kind, card, from) {
    mode = kind;
    opener = from || null;
    form.reset();
    moved = false;
    chosen = false;
    etat.textContent = "";
    erreurs.replaceChildren();
    for (const e of form.querySelectorAll(".cc-err")) e.textContent = "";
    titre.textContent = TITLES[kind] + (card ? " : " + card.name : "");
    form.elements.kind.value = kind;
    form.elements.structure_id.value = card ? String(card.id) : "";
    for (const fs of form.querySelectorAll("fieldset[data-modes]")) {
      const on = fs.dataset.modes.split(" ").includes(kind);
      fs.hidden = !on;
      fs.disabled = !on;
    }
    if (card && kind === "update") {
      for (const f of FIELDS) if (form.elements[f] && card[f] != null && typeof card[f] !== "object") form.elements[f].value = card[f];
      if (card.ess_family) form.elements.ess_family.value = card.ess_family;
      if (card.opening_hours) form.elements.opening_hours.value = card.opening_hours.raw;
      const codes = new Set((card.sectors || []).map((s) => s.code));
      for (const c of form.querySelectorAll('input[name="sectors"]')) c.checked = codes.has(c.value);
    }
    panel.hidden = false;
    document.body.dataset.contrib = kind;
    getToken();
    if (kind === "create") {
      const m = map();
      if (m) {
        // The middle of the part of the map the form leaves visible.
        const c = m.getContainer().getBoundingClientRect(), f = panel.getBoundingClientRect();
        const free = Math.max(40, Math.min(c.width, f.left - c.left));
        placeMarker(m.unproject([free / 2, c.height / 2]).toArray(), false);
      }
    } else if (card && card.lon != null) {
      placeMarker([card.lon, card.lat], false);
    }
    (kind === "close" ? $("cc-c-message") : $("cc-c-name")).focus();
  }
  function closeForm() {
    panel.hidden = true;
    delete document.body.dataset.contrib;
    if (marker) { marker.remove(); marker = null; }
    if (opener) opener.focus();
  }
  $("cc-ajouter").addEventListener("click", (e) => openForm("create", null, e.currentTarget));
  $("cc-contrib-fermer").addEventListener("click", closeForm);
  panel.addEventListener("keydown", (e) => { if (e.key === "Escape") { e.stopPropagation(); closeForm(); } });

  // ---- address suggestions from Carteco's own /ban/search/ ----------------------------------
  const adr = $("cc-c-address_line");
  const sugg = $("cc-c-suggestions");
  let suggSeq = 0, active = -1, items = [];
  function hideSugg() { sugg.hidden = true; adr.setAttribute("aria-expanded", "false"); adr.removeAttribute("aria-activedescendant"); active = -1; }
  function choose(f) {
    const p = f.properties;
    adr.value = p.name || p.label;
    if (p.postcode) form.elements.postcode.value = p.postcode;
    if (p.city) form.elements.commune_name.value = p.city;
    moved = false;
    chosen = true;
    placeMarker(f.geometry.coordinates, true);
    hideSugg();
  }
  function highlight(i) {
    const lis = sugg.querySelectorAll("li");
    lis.forEach((li, j) => li.setAttribute("aria-selected", j === i ? "true" : "false"));
    active = i;
    if (lis[i]) adr.setAttribute("aria-activedescendant", lis[i].id);
  }
  let timer = null;
  adr.addEventListener("input", () => {
    clearTimeout(timer);
    if (!config.ban || adr.value.trim().length < 3) { hideSugg(); return; }
    timer = setTimeout(async () => {
      const seq = ++suggSeq;
      const r = await fetch("/ban/search/?limit=5&q=" + encodeURIComponent(adr.value.trim().slice(0, 200)));
      if (!r.ok || seq !== suggSeq) return;
      items = (await r.json()).features || [];
      sugg.replaceChildren();
      items.forEach((f, i) => {
        const li = el("li", f.properties.label);
        li.id = "cc-c-sugg-" + i;
        li.setAttribute("role", "option");
        li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(f); });
        sugg.appendChild(li);
      });
      sugg.hidden = !items.length;
      adr.setAttribute("aria-expanded", items.length ? "true" : "false");
    }, 200);
  });
  adr.addEventListener("keydown", (e) => {
    if (sugg.hidden) return;
    if (e.key === "ArrowDown") { e.preventDefault(); highlight(Math.min(active + 1, items.length - 1)); }
    else if (e.key === "ArrowUp") { e.preventDefault(); highlight(Math.max(active - 1, 0)); }
    else if (e.key === "Enter" && active >= 0) { e.preventDefault(); choose(items[active]); }
    else if (e.key === "Escape") { e.stopPropagation(); hideSugg(); }
  });
  adr.addEventListener("blur", () => setTimeout(hideSugg, 150));

  // ---- sending --------------------------------------------------------------------------------
  function showErrors(list, detail) {
    erreurs.replaceChildren();
    const ul = el("ul", null, "cc-erreurs");
    for (const e of list.length ? list : [{ field: "", reason: detail }]) {
      const li = el("li", (e.field ? e.field + " : " : "") + e.reason);
      ul.appendChild(li);
      const input = form.elements[e.field];
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    }
    erreurs.appendChild(el("p", "La proposition n'a pas pu être enregistrée :"));
    erreurs.appendChild(ul);
    const first = list.find((e) => form.elements[e.field] && form.elements[e.field].focus);
    if (first) form.elements[first.field].focus();
  }
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
    const fields = {};
    if (mode !== "close") {
      for (const f of FIELDS) {
        const v = form.elements[f].value.trim();
        if (v) fields[f] = v;
      }
      const sectors = [...form.querySelectorAll('input[name="sectors"]:checked')].map((c) => c.value);
      if (sectors.length || mode === "create") fields.sectors = sectors;
      if (mode === "create") {
        for (const f of ["siret", "rna"]) { const v = form.elements[f].value.trim(); if (v) fields[f] = v; }
      }
    }
    const body = {
      kind: mode, fields, form_token: formToken,
      contributor_email: form.elements.contributor_email.value.trim() || null,
      site_web_2: form.elements.site_web_2.value,
    };
    if (mode !== "create") body.structure_id = parseInt(form.elements.structure_id.value, 10);
    if (mode !== "create") { const m = form.elements.message.value.trim(); if (m) body.message = m; }
    if (marker && (chosen || moved)) {
      const p = marker.getLngLat();
      body.location = [p.lng, p.lat];
      body.location_moved = moved || chosen;
    }
    $("cc-contrib-envoyer").disabled = true;
    etat.textContent = "Envoi en cours…";
    try {
      const r = await fetch("/contributions", {
        method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
      });
      const d = await r.json().catch(() => ({}));
      if (r.ok) {
        etat.textContent = (d.message || "Merci !") + " Numéro de suivi : " + d.id + ".";
        erreurs.replaceChildren();
        panel.scrollTop = 0;  // the thanks are read out (aria-live) and seen
        document.body.dataset.contribSent = String(d.id);
        form.reset();
        getToken();
      } else {
        etat.textContent = "";
        showErrors(d.errors || [], d.detail || "erreur " + r.status);
        getToken();
      }
    } finally {
      $("cc-contrib-envoyer").disabled = false;
    }
  });
})();
