"""Report rendering with the built-in engine (nbclient + pandoc + typst) and the Quarto path.

The bundle is the clearly synthetic example in ``spevidence.report._example``. Kernel
start-up is slow, so the full renders run once per module (two runs, to check that
outputs are byte-identical).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from spevidence.bundle import read_manifest, scan_text, small_count_findings
from spevidence.bundle.hashing import sha256_file
from spevidence.errors import ReportError
from spevidence.report import find_quarto, render, template_dir
from spevidence.report._example import write_example_bundle
from spevidence.report._qmd import parse_qmd, parse_qmd_text

FORMATS = ("html", "pdf", "docx")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_example_bundle(tmp_path_factory.mktemp("ex") / "bundle")


@pytest.fixture(scope="module")
def rendered(
    bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Path], dict[str, Path]]:
    """Render the example bundle twice with the built-in engine (no Quarto on PATH)."""
    mp = pytest.MonkeyPatch()
    mp.delenv("QUARTO_PATH", raising=False)
    mp.setenv(
        "PATH",
        os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "quarto").exists()
        ),
    )
    try:
        first = render(bundle, tmp_path_factory.mktemp("r1"), formats=FORMATS, engine="auto")
        second = render(bundle, tmp_path_factory.mktemp("r2"), formats=FORMATS, engine="builtin")
    finally:
        mp.undo()
    return first, second


def _docx_text(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        xml = z.read("word/document.xml").decode("utf-8")
    return re.sub(r"<[^>]+>", " ", xml)


def _pdf_text(path: Path) -> str:
    exe = shutil.which("pdftotext")
    if exe is None:
        pytest.fail("pdftotext (Debian package poppler-utils) is needed to check PDF text")
    return subprocess.run(
        [exe, "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


# -- outputs -------------------------------------------------------------------------


def test_outputs_exist_and_two_runs_are_byte_identical(rendered) -> None:
    first, second = rendered
    assert set(first) == set(FORMATS)
    for fmt in FORMATS:
        assert first[fmt].name == f"report.{fmt}"
        data = first[fmt].read_bytes()
        assert len(data) > 10_000
        assert data == second[fmt].read_bytes(), f"report.{fmt} differs between two renders"


def test_html_is_self_contained(rendered) -> None:
    html = rendered[0]["html"].read_text(encoding="utf-8")
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    refs += re.findall(r"""url\(\s*["']?([^"')]+)""", html)
    external = [r for r in refs if re.match(r"(?i)(https?:)?//", r)]
    assert external == []
    imgs = re.findall(r"<img[^>]*>", html)
    assert len(imgs) >= 8  # every figure is embedded
    assert all('src="data:image/png;base64,' in i for i in imgs)
    assert all(re.search(r'alt="[^"]{10,}"', i) for i in imgs)  # alt text on every figure
    assert "<script" not in html
    assert 'lang="en-GB"' in html


def test_report_content_follows_the_results(rendered, bundle: Path) -> None:
    html = rendered[0]["html"].read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    for heading in (
        "Summary",
        "The evaluation protocol",
        "Data and linkage",
        "How the cohort was formed",
        "Matching balance",
        "Outcome trends",
        "Main results",
        "Event study and pre-trend test",
        "Social return on investment",
        "Limitations",
        "Disclosure control",
        "Reproducibility",
    ):
        assert heading in text, heading
    # key numbers come from the bundle: GP estimate -0.128 on the log scale is -12.0 %
    assert "−12.0%" in text
    assert "£1.90" in text
    # the CI of admissions includes zero, and the text says so
    assert re.search(r"Unplanned admissions.{0,120}no clear evidence", text, re.S)
    # the pre-trend test passed in this bundle: no "failed" warning
    assert "pre-trend test did not reject" in text
    assert "pre-trend test failed" not in text and "Read with care" not in text
    # sections whose tables are absent say so
    assert "not run in this evaluation (the bundle holds no staggered table)" in text
    # the reproducibility appendix carries the protocol hash from the manifest
    assert read_manifest(bundle)["protocol_sha256"] in text


def test_docx_has_the_same_content(rendered) -> None:
    text = _docx_text(rendered[0]["docx"])
    assert "Social prescribing evaluation" in text
    assert "Difference-in-differences estimates" in text
    with zipfile.ZipFile(rendered[0]["docx"]) as z:
        media = [n for n in z.namelist() if n.startswith("word/media/")]
    assert len(media) >= 8


def test_pdf_is_a4_and_pages_are_not_blank(rendered, tmp_path: Path) -> None:
    from PIL import Image

    pdf = rendered[0]["pdf"]
    assert pdf.read_bytes().startswith(b"%PDF-")
    exe = shutil.which("pdftoppm")
    if exe is None:
        pytest.fail("pdftoppm (Debian package poppler-utils) is needed to check PDF pages")
    subprocess.run([exe, "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 6
    for page in pages:
        im = Image.open(page).convert("L")
        w, h = im.size
        assert abs(h / w - 297 / 210) < 0.01  # A4 portrait
        body = im.crop((0, int(0.08 * h), w, int(0.9 * h)))  # without running header/footer
        dark = sum(1 for px in body.tobytes() if px < 200)
        assert dark > 20, f"{page.name} looks blank ({dark} dark pixels)"
    text = _pdf_text(pdf)
    assert "Social prescribing evaluation" in text and "Reproducibility" in text


def test_no_identifiers_or_small_counts_in_bundle_or_report(rendered, bundle: Path) -> None:
    m = read_manifest(bundle)
    allow = [
        sha256_file(bundle / "manifest.json"),  # printed on the title page (issue 23)
        m["protocol_sha256"],
        *m["files"].values(),
        *(v["sha256"] for v in m["inputs"].values()),
    ]
    texts = {
        "report.html": rendered[0]["html"].read_text(encoding="utf-8"),
        "report.docx": _docx_text(rendered[0]["docx"]),
        "report.pdf": _pdf_text(rendered[0]["pdf"]),
    }
    for p in sorted(bundle.rglob("*")):
        if p.suffix in (".csv", ".json", ".yaml", ".svg"):
            texts[p.name] = p.read_text(encoding="utf-8")
    findings = [f for name, t in texts.items() for f in scan_text(t, name=name, allow=allow)]
    assert findings == []
    counts = {
        "attrition": ["n", "n_dropped"],
        "qa": ["rows_failing", "rows_checked"],
        "did_estimates": ["n"],
        "sroi_simulation": ["count"],
    }
    for name, cols in counts.items():
        df = pd.read_csv(bundle / "tables" / f"{name}.csv")
        assert small_count_findings(df, name=name, count_columns=cols) == []


# -- the template itself, run in-process on partial bundles ---------------------------


def _run_template_in_process(bundle_dir: Path, workdir: Path, monkeypatch) -> str:
    """Execute the template's python cells here (no kernel) and collect what they show."""
    import spevidence.report.sections as sections

    shown: list[str] = []
    monkeypatch.setattr(sections, "show", shown.append)
    monkeypatch.chdir(workdir)
    doc = parse_qmd(template_dir() / "report.qmd")
    ns: dict[str, object] = {}
    for cell in doc.cells:
        exec(compile(cell.source, f"report.qmd:{cell.line}", "exec"), ns)
        if "parameters" in cell.tags:
            ns["bundle"] = str(bundle_dir)
    return "\n".join(shown)


def test_template_handles_missing_tables(tmp_path: Path, monkeypatch) -> None:
    b = write_example_bundle(
        tmp_path / "b",
        with_figures=False,
        drop=(
            "event_study",
            "pretrend_test",
            "sroi_summary",
            "sroi_by_outcome",
            "sroi_sensitivity",
            "sroi_simulation",
            "balance",
            "trends",
        ),
    )
    md = _run_template_in_process(b, tmp_path, monkeypatch)
    for name in ("event_study", "sroi_summary", "balance", "staggered", "sensitivity"):
        assert f"the bundle holds no `{name}` table" in md
    assert "Difference-in-differences estimates" in md  # what is present is still shown
    assert "![Cohort flow diagram](_figures/cohort_flow.png)" in md  # drawn from the table
    assert (tmp_path / "_figures" / "cohort_flow.png").is_file()


def test_template_on_bundle_with_no_tables(tmp_path: Path, monkeypatch) -> None:
    from spevidence.bundle import write_bundle

    b = write_bundle(
        tmp_path / "b",
        tables={},
        figures={},
        protocol={"name": "empty"},
        inputs={},
        seed=1,
        engine="duckdb",
        disclosure_log=pd.DataFrame({"table": [], "action": []}),
    )
    md = _run_template_in_process(b, tmp_path, monkeypatch)
    assert md.count("not run in this evaluation") >= 8
    assert (
        "Not run in this evaluation: an event study with a pre-trend check, "
        "the social return on investment." in md
    )


def test_failed_pretrend_and_imbalance_become_warnings(tmp_path: Path, monkeypatch) -> None:
    # only the tables these checks read, so that few figures are drawn in-process
    drop = (
        "trends",
        "event_study",
        "attrition",
        "sroi_by_outcome",
        "sroi_sensitivity",
        "sroi_simulation",
    )
    b = write_example_bundle(tmp_path / "b", pretrend_fails=True, with_figures=False, drop=drop)
    bal = pd.read_csv(b / "tables" / "balance.csv")
    assert bal["smd_after"].abs().max() < 0.1
    md = _run_template_in_process(b, tmp_path, monkeypatch)
    assert "The pre-trend test **failed** for GP appointments" in md
    assert "The pre-trend test failed for GP appointments" in md  # limitations
    assert "Read with care" in md


# -- Quarto path, with a stand-in executable ------------------------------------------

_STAND_IN = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
log = Path(os.environ["STANDIN_LOG"])
calls = json.loads(log.read_text()) if log.exists() else []
calls.append({{"args": args, "cwd": os.getcwd(),
              "qmd_present": Path(args[1]).is_file() if len(args) > 1 else False,
              "quarto_python": os.environ.get("QUARTO_PYTHON"),
              "pythonpath": os.environ.get("PYTHONPATH", "")}})
log.write_text(json.dumps(calls))
out = args[args.index("--output") + 1]
Path(out).write_text("rendered by stand-in: " + " ".join(args))
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch) -> Path:
    exe = tmp_path / "bin" / "quarto"
    exe.parent.mkdir()
    exe.write_text(_STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.json"
    monkeypatch.setenv("STANDIN_LOG", str(log))
    monkeypatch.setenv("QUARTO_PATH", str(exe))
    return log


def test_quarto_engine_calls_quarto_render(stand_in: Path, bundle: Path, tmp_path: Path) -> None:
    assert find_quarto() == Path(os.environ["QUARTO_PATH"])
    out = render(bundle, tmp_path / "q", formats="html,pdf,docx", engine="auto")
    calls = json.loads(stand_in.read_text())
    assert [c["args"] for c in calls] == [
        [
            "render",
            "report.qmd",
            "--to",
            to,
            "--output",
            f"report.{ext}",
            "-P",
            f"bundle:{bundle.resolve()}",
        ]
        for to, ext in (("html", "html"), ("typst", "pdf"), ("docx", "docx"))
    ]
    assert all(c["qmd_present"] and c["quarto_python"] == sys.executable for c in calls)
    assert str(Path(__file__).resolve().parents[1]) in calls[0]["pythonpath"].split(os.pathsep)
    assert out["pdf"].read_text().startswith("rendered by stand-in: render report.qmd --to typst")


def test_quarto_failure_is_a_report_error(stand_in: Path, bundle: Path, tmp_path: Path) -> None:
    exe = Path(os.environ["QUARTO_PATH"])
    exe.write_text("#!/bin/sh\necho 'ERROR: kernel died' >&2\nexit 3\n")
    with pytest.raises(ReportError, match=r"failed \(exit 3\): ERROR: kernel died"):
        render(bundle, tmp_path / "q", formats="html", engine="quarto")


def test_engine_quarto_without_quarto(monkeypatch, bundle: Path, tmp_path: Path) -> None:
    monkeypatch.delenv("QUARTO_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReportError, match="no quarto executable was found"):
        render(bundle, tmp_path / "q", formats="html", engine="quarto")


# -- inputs the renderer refuses ------------------------------------------------------


def test_render_refuses_tampered_bundle(tmp_path: Path) -> None:
    b = write_example_bundle(tmp_path / "b", with_figures=False)
    f = b / "tables" / "did_estimates.csv"
    f.write_text(f.read_text().replace("-0.128", "-0.228"))
    with pytest.raises(ReportError, match=r"tables/did_estimates\.csv: contents differ"):
        render(b, tmp_path / "out", formats="html", engine="builtin")


def test_bad_format_and_template(bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="unknown report format 'odt'"):
        render(bundle, tmp_path, formats="html,odt")
    with pytest.raises(ReportError, match="unknown report template 'nope'"):
        render(bundle, tmp_path, formats="html", template="nope")


def test_qmd_parser() -> None:
    doc = parse_qmd_text(
        "---\ntitle: T\nexecute:\n  echo: false\n---\n\n# H\n\ntext\n\n"
        '```{python}\n#| label: fig-x\n#| fig-cap: "A cap"\nx = 1\nprint(x)\n```\n\n'
        "```python\nnot a cell\n```\n"
    )
    assert doc.front_matter == {"title": "T", "execute": {"echo": False}}
    assert len(doc.cells) == 1
    assert doc.cells[0].options == {"label": "fig-x", "fig-cap": "A cap"}
    assert doc.cells[0].source == "x = 1\nprint(x)"
    assert "not a cell" in doc.chunks[-1].text  # type: ignore[union-attr]
    with pytest.raises(ReportError, match="never closed"):
        parse_qmd_text("```{python}\nx = 1\n")
    with pytest.raises(ReportError, match="YAML header"):
        parse_qmd_text("---\ntitle: [unclosed\n---\n")


def test_assemble_honours_cell_options(tmp_path: Path) -> None:
    """Cell outputs become markdown as Quarto would place them (echo, include, output, figures)."""
    import base64

    import nbformat

    from spevidence.report._builtin import assemble_markdown, build_notebook

    doc = parse_qmd_text(
        "---\ntitle: T\nformat: html\nexecute:\n  echo: false\n---\n\nIntro.\n\n"
        "```{python}\n#| tags: [parameters]\nbundle = 'b'\n```\n\n"
        "```{python}\n#| include: false\nhidden = 1\n```\n\n"
        "```{python}\n#| echo: true\nx = 2\n```\n\n"
        "```{python}\n#| output: asis\nprint('**raw** markdown')\n```\n\n"
        "```{python}\n#| output: false\nprint('never shown')\n```\n\n"
        "```{python}\n#| label: fig-one\n#| fig-cap: A caption\n"
        "#| fig-alt: Alt words\nplot()\n```\n"
    )
    nb, cells = build_notebook(doc, {"bundle": "/abs/bundle"})
    sources = [c.source for c in nb.cells]
    assert sources[1] == "bundle = '/abs/bundle'"  # injected after the parameters cell
    assert [c["id"] for c in nb.cells] == [f"cell-{i:04d}" for i in range(len(nb.cells))]
    png = base64.b64encode(b"\x89PNG fake bytes").decode()
    out = nbformat.v4
    nb.cells[2].outputs = [out.new_output("stream", name="stdout", text="hidden output")]
    nb.cells[4].outputs = [out.new_output("stream", name="stdout", text="**raw** markdown\n")]
    nb.cells[5].outputs = [out.new_output("stream", name="stdout", text="never shown")]
    nb.cells[6].outputs = [
        out.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
        out.new_output("stream", name="stderr", text="a warning"),
    ]
    md = assemble_markdown(doc, nb, cells, tmp_path)
    assert md.startswith("---\ntitle: T\n---\n")  # format/execute options are not metadata
    assert "Intro." in md
    assert "hidden" not in md and "never shown" not in md and "a warning" not in md
    assert "```python\nx = 2\n```" in md and "bundle = " not in md
    assert "\n**raw** markdown\n" in md
    assert '![A caption](_figures/fig-001.png){#fig-one fig-alt="Alt words"}' in md
    assert (tmp_path / "_figures" / "fig-001.png").read_bytes() == b"\x89PNG fake bytes"


def test_cohort_flow_reads_both_attrition_layouts() -> None:
    from spevidence.report.figures import _flow_steps, cohort_flow

    on_step = pd.DataFrame(
        {
            "step": ["All", "Referred", "Matched"],
            "n": [1000, 300, 250],
            "n_dropped": [None, 700, 50],
            "reason": [None, "not referred", "no match"],
        }
    )
    separate = pd.DataFrame(
        {
            "step": ["All", "Excluded: not referred", "Referred", "Excluded: no match", "Matched"],
            "n": pd.array([1000, None, 300, None, 250], dtype="Int64"),
            "n_dropped": pd.array([None, 700, None, 50, None], dtype="Int64"),
            "reason": ["", "not referred", "", "no match", ""],
        }
    )
    expected = [
        {"label": "All", "n": 1000, "excluded": []},
        {"label": "Referred", "n": 300, "excluded": [("not referred", 700)]},
        {"label": "Matched", "n": 250, "excluded": [("no match", 50)]},
    ]
    for table in (on_step, separate):
        steps = _flow_steps(table)
        assert [(s["label"], int(s["n"])) for s in steps] == [
            (e["label"], e["n"]) for e in expected
        ]
        assert [[(w, int(c)) for w, c in s["excluded"]] for s in steps] == [
            e["excluded"] for e in expected
        ]
        alt = cohort_flow(table).spevidence_alt  # type: ignore[attr-defined]
        assert "Matched, n = 250 (excluded: no match, n = 50)" in alt


def test_disclosure_statement_follows_the_rules_used(tmp_path: Path) -> None:
    from spevidence.bundle import write_bundle
    from spevidence.report.narrative import Narrative
    from spevidence.report.sections import ReportBundle

    log = pd.DataFrame(
        {
            "table": ["attrition", "attrition", "qa"],
            "column": ["n", "n", "rows"],
            "row": ["1", "all", "0"],
            "action": ["redacted_primary", "rounded", "redacted_secondary"],
            "reason": ["count between 1 and 10", "2 rounded", "would reveal row 1"],
        }
    )
    att = pd.DataFrame({"step": ["All", "Matched"], "n": [1000.0, None]})
    b = write_bundle(
        tmp_path / "b",
        tables={"attrition": att},
        figures={},
        protocol={"disclosure": {"threshold": 10, "rounding": 10}},
        inputs={},
        seed=1,
        engine="duckdb",
        disclosure_log=log,
    )
    rb = ReportBundle(b)
    text = Narrative(rb).disclosure()
    assert "counts from 1 to 10 were redacted" in text and "nearest 10" in text
    assert "| attrition | redacted_primary | 1 |" in text
    assert "| qa | redacted_secondary | 1 |" in text
    assert rb.redactions("attrition") == 1 and rb.redactions("qa") == 1
    shown = rb.table_md("attrition", caption="Flow")
    assert "| Matched | [c] |" in shown and "[c] marks a cell withheld" in shown
    assert "2 small number(s) were redacted" in Narrative(rb).limitations()


def test_wellbeing_display_fits_a_page() -> None:
    from spevidence.report.narrative import wellbeing_display

    raw = pd.DataFrame(
        {
            "instrument": ["swemwbs", "ons4_anxiety"],
            "label": ["SWEMWBS (7-35)", "ONS anxiety"],
            "people": [300, float("nan")],
            "baseline_mean": [19.2126, 5.0],
            "baseline_sd": [4.0916, 2.0],
            "followup_mean": [22.505, 4.0],
            "followup_sd": [5.0804, 2.5],
            "mean_change": [3.2924, -1.0],
            "conf_low": [2.9516, -1.5],
            "conf_high": [3.6332, -0.5],
            "p_value": [1.9e-53, 0.0123],
            "effect_size_dz": [1.0958, -0.4],
            "improved": [250, float("nan")],
            "percent_improved": [83.333, float("nan")],
            "worsened": [30, 10],
            "percent_worsened": [10.0, 12.5],
        }
    )
    out = wellbeing_display(raw)
    assert len(out.columns) == 9  # was 20 columns: unreadable on an A4 page
    first, second = out.iloc[0], out.iloc[1]
    assert first["Baseline mean (SD)"] == "19.21 (4.09)"
    assert first["Change (95% CI)"] == "3.29 (2.95 to 3.63)"
    assert first["p"] == "<0.001"
    assert first["Improved"] == "250 (83%)"
    assert second["People"] == "[x]"  # redacted count stays visibly missing
    assert second["Improved"] == "[x]"
    assert second["Change (95% CI)"] == "−1.00 (−1.50 to −0.50)"
    assert second["p"] == "0.012"


def test_table_cells_are_literal_text() -> None:
    from spevidence.report.sections import markdown_table

    md = markdown_table(
        pd.DataFrame({"setting": ["title"], "value": ["Link workers in <PCN/ICB> | x"]})
    )
    row = next(line for line in md.splitlines() if "title" in line)
    assert r"\<PCN/ICB\>" in row and r"\|" in row  # not an HTML tag, not a column break


def test_did_display_shows_rate_ratios_for_poisson() -> None:
    from spevidence.report.narrative import did_display

    raw = pd.DataFrame(
        {
            "outcome": ["gp", "gp"],
            "model": ["linear", "poisson"],
            "estimate": [-0.17691, -0.34606],
            "conf_low": [-0.28874, -0.55205],
            "conf_high": [-0.06509, -0.14007],
            "p_value": [0.00203, 0.00099],
            "n": [6025, 5940],
            "rate_ratio": [float("nan"), 0.70747],
            "rr_conf_low": [float("nan"), 0.57577],
            "rr_conf_high": [float("nan"), 0.86930],
        }
    )
    out = did_display(raw)
    assert list(out["Effect measure"]) == ["difference per person per period", "rate ratio"]
    assert out.loc[0, "Estimate (95% CI)"] == "−0.177 (−0.289 to −0.065)"
    assert out.loc[1, "Estimate (95% CI)"] == "0.707 (0.576 to 0.869)"
    assert list(out["p value"]) == ["0.002", "<0.001"]
    assert out.loc[0, "Outcome"] != "gp"  # a plain-English label


def test_trends_caption_says_which_outcomes_are_pooled(tmp_path: Path) -> None:
    from spevidence.report.narrative import Narrative
    from spevidence.report.sections import ReportBundle

    b = write_example_bundle(tmp_path / "b", with_figures=False)
    monthly = Narrative(ReportBundle(b)).trends_caption()
    assert "by quarter" not in monthly and "by half-year" not in monthly
    tr = pd.read_csv(b / "tables" / "trends.csv")
    tr["months"] = tr["outcome"].map({"gp": 1, "ae": 3, "admissions": 6})
    tr.to_csv(b / "tables" / "trends.csv", index=False)
    caption = Narrative(ReportBundle(b)).trends_caption()
    assert "A&E attendances by quarter; Unplanned admissions by half-year" in caption
    assert "too small to release" in caption and "GP appointments" not in caption


def test_sroi_summary_as_the_pipeline_names_it(tmp_path: Path) -> None:
    # the pipeline writes sroi.glance()'s names (ratio_conf_low, p_ratio_gt_1), not the
    # example bundle's: the report labels and formats them and gives the break-even chance
    from spevidence.report.narrative import Narrative
    from spevidence.report.sections import ReportBundle

    b = write_example_bundle(tmp_path / "b", with_figures=False, drop=("sroi_simulation",))
    pd.DataFrame(
        {
            "measure": ["total_inputs", "present_value", "sroi_ratio", "ratio_conf_low",
                        "ratio_conf_high", "p_ratio_gt_1"],
            "value": [1000.0, 1500.0, 1.5, 0.8, 2.25, 0.87],
        }
    ).to_csv(b / "tables" / "sroi_summary.csv", index=False)  # fmt: skip
    (b / "tables" / "sroi_simulation.csv").write_text("bin_low,bin_high,count\n0,1,13\n1,2,87\n")
    nar = Narrative(ReportBundle(b))
    text = nar.sroi()
    assert "SROI ratio, 2.5th percentile of simulations | £0.80" in text
    assert "SROI ratio, 97.5th percentile of simulations | £2.25" in text
    assert "Chance the ratio exceeds 1 (simulation) | 87%" in text
    assert "In 87% of simulations the SROI ratio exceeded 1" in nar.simulation()


def test_rendered_report_names_things_in_words_and_prints_its_anchor(rendered, bundle) -> None:
    """Issue 23: no raw names, one mark per meaning, the manifest's SHA-256 on the title
    page (before the summary) and in the appendix, the regression-to-the-mean contrast."""
    import hashlib
    import html as html_lib

    html = rendered[0]["html"].read_text(encoding="utf-8")
    text = html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))
    for raw in ("treat:post", "treated:post", "sexF", "gp m4 6", "gp_m4_6", "Poisson · "):
        assert raw not in text, raw
    assert "Sex: female" in text and "GP appointments, 4–6 months before" in text
    sha = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert text.count(sha) == 2 and text.index(sha) < text.index("This report compares")
    # the naive change and the matched estimate side by side, per outcome, in words
    assert "Regression to the mean" in text
    assert re.search(r"GP appointments.{0,40}−27\.2% \(−34\.0% to −19\.7%\)", text)
    assert (
        "(−27.2%) is 15.2 percentage points below the matched estimate of the effect "
        "(−12.0%), so a before-and-after count makes the service look better" in text
    )
    pdf = _pdf_text(rendered[0]["pdf"])
    assert sha[:40] in pdf.replace("\n", "")


def test_board_summary_fits_one_page_and_states_each_naive_change(bundle, tmp_path) -> None:
    out = render(
        bundle, tmp_path / "s", formats=("html", "pdf"), engine="builtin", template="summary"
    )
    import html as html_lib

    html = out["html"].read_text(encoding="utf-8")
    text = html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))
    # each outcome's naive change, not their average (about -1 % in the demo)
    assert "−27.2% in GP appointments, −4.8% in A&E attendances, +28.6% in Unplanned" in text
    assert "changes of about" not in text
    assert "Regression to the mean" in text
    info = subprocess.run(
        ["pdfinfo", str(out["pdf"])], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"^Pages:\s+1$", info, re.M), info
