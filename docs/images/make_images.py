"""Regenerate the page images in docs/images from the SYNTHETIC example bundle.

Run from the repository root:  python docs/images/make_images.py
Needs pdftoppm (Debian package poppler-utils) and, for the HTML screenshot, chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from spevidence.report import render
from spevidence.report._example import write_example_bundle

HERE = Path(__file__).resolve().parent


def _pdf_pages(pdf: Path, pages: dict[int, str], dpi: int = 70) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for page, name in pages.items():
            stem = Path(tmp) / name
            subprocess.run(
                [
                    "pdftoppm",
                    "-r",
                    str(dpi),
                    "-png",
                    "-f",
                    str(page),
                    "-l",
                    str(page),
                    "-singlefile",
                    str(pdf),
                    str(stem),
                ],
                check=True,
            )
            Image.open(stem.with_suffix(".png")).convert("P", palette=Image.Palette.ADAPTIVE).save(
                HERE / f"{name}.png", optimize=True
            )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = write_example_bundle(root / "bundle", pretrend_fails=True)
        report = render(bundle, root / "out", formats=("html", "pdf"), engine="builtin")
        summary = render(
            bundle, root / "out", formats=("pdf",), template="summary", engine="builtin"
        )
        _pdf_pages(
            report["pdf"], {1: "report-pdf-page1", 3: "report-pdf-cohort", 6: "report-pdf-results"}
        )
        _pdf_pages(summary["pdf"], {1: "summary-pdf"})
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium:
            shot = root / "html.png"
            subprocess.run(
                [
                    chromium,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1100,1500",
                    f"--screenshot={shot}",
                    report["html"].resolve().as_uri(),
                ],
                check=True,
                capture_output=True,
            )
            Image.open(shot).convert("P", palette=Image.Palette.ADAPTIVE).save(
                HERE / "report-html.png", optimize=True
            )


if __name__ == "__main__":
    main()
