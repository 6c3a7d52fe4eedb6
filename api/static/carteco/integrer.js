/* "Intégrer la carte": builds the <iframe> snippet from the form (no inline script: the
 * pages run under a CSP without 'unsafe-inline'). */
(function () {
  const $ = (id) => document.getElementById(id);
  function update() {
    const p = new URLSearchParams();
    for (const k of ["territoire", "secteur", "famille"]) { const v = $("i-" + k).value; if (v) p.set(k, v); }
    const src = ($("integrer").dataset.base || location.origin) + "/embed" + (p.toString() ? "?" + p : "");
    let w = $("i-largeur").value.trim() || "100%";
    if (!/^\d+(%|px)?$/.test(w)) w = "100%";
    const h = Math.max(200, Math.min(2000, parseInt($("i-hauteur").value, 10) || 500));
    const code = '<iframe src="' + src + '" width="' + w + '" height="' + h + '" style="border:0" loading="lazy" title="Carte des structures de l\'ESS (Carteco)" allowfullscreen></iframe>';
    $("i-code").value = code;
    $("i-apercu").href = src;
  }
  $("integrer").addEventListener("submit", (e) => e.preventDefault());
  document.querySelectorAll("#integrer select, #integrer input").forEach((el) => el.addEventListener("change", update));
  $("i-copier").addEventListener("click", () => { $("i-code").select(); navigator.clipboard && navigator.clipboard.writeText($("i-code").value); });
  update();
})();
