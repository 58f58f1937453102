"""Every standard workbook opens in a real spreadsheet application: LibreOffice (headless)
converts it to PDF without error, one or more pages per sheet."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from reportdata import HOSTS, fill

from patchwave.reporting.datasets import Context
from patchwave.reporting.definitions import STANDARD, standard
from patchwave.reporting.engine import Writer
from patchwave.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", STANDARD)
def test_libreoffice_converts_the_workbook_to_pdf(tmp_path: Path, kind: str) -> None:
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice (libreoffice-calc-nogui) is missing: scripts/setup.sh installs it"
    store = Store(f"sqlite:///{tmp_path / 'pw.db'}")
    fill(store)
    book, _path = standard(ROOT / "reports", kind)
    written = Writer().write(book, Context(store, HOSTS), tmp_path / f"{kind}.xlsx", "test")
    proc = subprocess.run([soffice, "--headless", "--convert-to", "pdf", "--outdir", str(tmp_path), written["workbook"]],
                          capture_output=True, text=True, timeout=180, check=False,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    pdf = tmp_path / f"{kind}.pdf"
    assert proc.returncode == 0 and pdf.is_file(), proc.stdout + proc.stderr
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= len(written["sheets"]) + 1  # the About sheet and every other sheet print
