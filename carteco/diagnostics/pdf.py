"""The report as PDF, printed by a headless Chromium from the report's print CSS.

Chromium is a program, not a Python package: it is run as a subprocess, in a throwaway
profile, with the network off (the report is self-contained), and given time to draw the
Leaflet maps before printing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from carteco.errors import CartecoError


class PdfError(CartecoError):
    """Chromium missing, failing or producing no PDF."""

    kind = "unavailable"


def find_chromium(configured: str | None = None) -> str:
    """Path of the Chromium binary: the configured one, else the first found on PATH."""
    candidates = [configured] if configured else ["chromium", "chromium-browser", "google-chrome"]
    for name in candidates:
        found = shutil.which(name) if name else None
        if found:
            return found
    raise PdfError(
        "Chromium introuvable pour produire le PDF "
        f"({configured or 'chromium'}) : installez-le (apt-get install chromium) ou "
        "indiquez son chemin (CARTECO_CHROMIUM)."
    )


def html_to_pdf(html: Path, pdf: Path, chromium: str | None = None, timeout_s: float = 120) -> Path:
    """Print an HTML file to PDF with headless Chromium; return the PDF path."""
    binary = find_chromium(chromium)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="carteco-pdf-") as profile:
        cmd = [
            binary,
            "--headless=new",
            "--no-sandbox",  # root in containers; the page is our own self-contained report
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            # No network: every script, style and datum is inline in the report.
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=8000",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf.resolve()}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise PdfError(f"Chromium n'a pas fini le PDF en {timeout_s:g} s") from exc
    if done.returncode != 0 or not pdf.exists() or pdf.stat().st_size == 0:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        raise PdfError(f"Chromium n'a pas produit le PDF (code {done.returncode}) : {tail}")
    return pdf
