"""``spevidence reproduce``: verify a bundle, re-render it, and optionally re-run it.

It sits above the bundle, the report and the pipeline (it uses all three), so that the
bundle never imports the report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spevidence.bundle import compare_bundles, read_manifest, result_files, verify_bundle
from spevidence.errors import ReportError
from spevidence.report import render, reports_not_from

Runner = Callable[..., Path]
"""``runner(protocol_path, *, data=DIR, out=DIR, key_file=PATH|None) -> bundle Path``.

The default runs ``spevidence.pipeline.run`` with the engine recorded in the manifest."""


@dataclass(frozen=True)
class Reproduction:
    """What ``reproduce`` checked and produced."""

    bundle: Path
    files_checked: int
    outputs: dict[str, Path] = field(default_factory=dict)
    rerun: Path | None = None
    results_compared: bool = False
    results_identical: bool = False  # byte for byte; else equal within RERUN_RTOL


def _listing(problems: list[str], limit: int = 8) -> str:
    shown = "; ".join(problems[:limit])
    more = len(problems) - limit
    return shown + (f"; and {more} more" if more > 0 else "")


def _default_runner(engine: Literal["duckdb", "spark"]) -> Runner:
    """Adapter to ``spevidence.pipeline.run`` (the ``spevidence run`` command)."""
    # imported here: the pipeline takes about 4 s to import, which a reproduction
    # without --data does not need
    from spevidence.pipeline import run

    def runner(protocol: Path, *, data: Path, out: Path, key_file: Path | None) -> Path:
        result = run(
            protocol,
            data,
            out,
            engine=engine,
            key_file=key_file,
            formats=("html",),
            progress=False,
            cache=False,  # a reproduction recomputes every stage
        )
        return result.bundle

    return runner


def reproduce(
    bundle_dir: str | Path,
    *,
    out_dir: str | Path | None = None,
    formats: Iterable[str] | str = ("html",),
    engine: str = "auto",
    data: str | Path | None = None,
    key_file: str | Path | None = None,
    runner: Runner | None = None,
) -> Reproduction:
    """Verify every file hash of a bundle, re-render its report, and with ``data`` re-run.

    Raises
    ------
    ReportError
        A bundle file differs from the manifest (the message names it), a report beside the
        bundle was not made from it, rendering failed, or the re-run gives different
        results (the message names the table).
    """
    bundle = Path(bundle_dir)
    manifest = read_manifest(bundle)
    problems = verify_bundle(bundle)
    if problems:
        raise ReportError(
            f"the bundle has been changed since it was made: {len(problems)} file(s) differ "
            "from manifest.json: " + _listing(problems)
        )
    if stale := reports_not_from(bundle):
        raise ReportError(
            f"a report beside the bundle was not made from it, so it may show other results: "
            f"{_listing(stale)}. Delete it and run 'spevidence run' again (or 'spevidence "
            "report' on this bundle) to make a report that matches."
        )
    out = Path(out_dir) if out_dir is not None else bundle.parent / (bundle.name + "_reproduced")
    outputs = render(bundle, out, formats=formats, engine=engine)  # type: ignore[arg-type]
    rerun_path: Path | None = None
    compared = identical = False
    if data is not None:
        run = runner if runner is not None else _default_runner(manifest.get("engine", "duckdb"))
        rerun_path = Path(
            run(
                bundle / "protocol.yaml",
                data=Path(data),
                out=out / "rerun_bundle",
                key_file=Path(key_file) if key_file else None,
            )
        )
        diffs = compare_bundles(bundle, rerun_path)
        if diffs:
            raise ReportError(
                f"re-running the protocol on {Path(data).name} did not reproduce the bundle: "
                + _listing(diffs)
            )
        compared = True
        identical = result_files(manifest) == result_files(read_manifest(rerun_path))
    return Reproduction(
        bundle=bundle,
        files_checked=len(manifest.get("files", {})),
        outputs=outputs,
        rerun=rerun_path,
        results_compared=compared,
        results_identical=identical,
    )
