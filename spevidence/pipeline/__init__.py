"""Run the stages of an evaluation for a protocol (DESIGN.md section 2).

:func:`run` reads the extracts, validates and pseudonymises them, links them into a
person × month panel, matches referred people to comparators at the referral month,
estimates the effect by difference-in-differences, values it by SROI, applies disclosure
control to every released table, writes the bundle and renders the report from the bundle
alone. :func:`run_demo` does the same on a freshly generated synthetic ICB.

One module per design: :mod:`~spevidence.pipeline.matched` (matched cohort, 2×2 and event
study) and :mod:`~spevidence.pipeline.staggered` (whole-population staggered DiD); what
both share (reading the extracts, disclosure control, SROI, service activity, the
bundle and report, each design's stages) is :mod:`~spevidence.pipeline.shared`. The
design is chosen once, in :func:`run`. Progress is :mod:`spevidence.progress`; the run's
memory limit and its watchdog are :mod:`spevidence.memory`.
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from pathlib import Path
from typing import Literal

from spevidence import memory
from spevidence._atomic import locked_output
from spevidence.did import NUMERICAL_ERRORS
from spevidence.errors import EstimationError, SpevidenceError
from spevidence.pipeline import matched, staggered
from spevidence.pipeline.matched import (
    did_window,
    matched_cohort,
    matched_two_by_two,
    matching_panel,
)
from spevidence.pipeline.shared import (
    STAGES,
    Inputs,
    RunResult,
    Steps,
    casefinding_gp,
    read_inputs,
    write_outputs,
)
from spevidence.protocol import Protocol, load_protocol
from spevidence.synthetic import generate

__all__ = [
    "RunResult",
    "casefinding_gp",
    "demo_key",
    "did_window",
    "matched_cohort",
    "matched_two_by_two",
    "matching_panel",
    "run",
    "run_demo",
]

DESIGNS = {"matched": matched.finish, "staggered": staggered.finish}


def run(
    protocol: Protocol | str | Path,
    data: str | Path,
    out: str | Path,
    *,
    engine: Literal["duckdb", "spark"] = "duckdb",
    key_file: str | Path | None = None,
    formats: tuple[str, ...] | None = None,
    report_engine: str | None = None,
    progress: bool = True,
    cache: bool = True,
) -> RunResult:
    """Run an evaluation end to end.

    Parameters
    ----------
    protocol
        A :class:`~spevidence.protocol.Protocol` or the path of a protocol YAML.
    data
        Folder of extracts (``docs/contracts.md``).
    out
        Output folder: ``OUT/bundle/`` and ``OUT/report.*`` are written there.
    engine
        ``"duckdb"`` (default, embedded) or ``"spark"`` (PySpark local mode).
    key_file
        File with the pseudonymisation key when the protocol's ``ids`` is ``nhs_number``
        (else the ``SPEVIDENCE_KEY`` environment variable). The key is never written.
    formats, report_engine
        Override the protocol's report formats and rendering engine.
    cache
        Reuse the panel, matching and estimates stored in ``OUT/.spevidence-cache/``
        by an earlier run whose inputs (file hashes, protocol, seed, engine, key,
        package version) these stages read are unchanged; ``False`` neither reads nor
        writes the cache. The cache holds pseudonyms and never enters the bundle
        (:mod:`spevidence._runcache`).
    """
    proto = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    out, data = Path(out), _extracts_folder(Path(data))
    steps = Steps(progress, STAGES[proto.design])
    limit = memory.run_limit()
    # the output folder is locked for the whole run; the bundle and reports are staged and
    # moved into it together at the end (spevidence._atomic); the memory of the whole
    # process tree is watched against the limit (spevidence.memory)
    with locked_output(out), steps.run(), memory.guard(limit, lambda: steps.current):
        inputs = read_inputs(proto, data, out, engine=engine, key_file=key_file, cache=cache)
        _check_size(proto, inputs, steps, limit)
        # the output tail both designs share (disclosure control, service activity from
        # the validated extracts, bundle, report)
        write = partial(
            write_outputs,
            data=data,
            out=out,
            extracts=inputs.extracts,
            engine=engine,
            formats=formats,
            report_engine=report_engine,
            step=steps.step,
            activity_from=inputs.clean,
        )
        finish = DESIGNS[proto.design]
        try:
            return finish(proto, inputs, engine=engine, steps=steps, write=write)
        except NUMERICAL_ERRORS as e:  # a last net: the designs name the model where they can
            raise _numerical_failure(proto, e) from None


def _numerical_failure(proto: Protocol, err: Exception) -> EstimationError:
    return EstimationError(
        f"The {proto.design} design failed numerically ({type(err).__name__}) while "
        f"estimating the outcomes {', '.join(proto.outcomes)}: the data cannot identify the "
        "model (an outcome with no or almost no events, a group with no variation, or "
        "too few people). Fix: run spevidence validate and read the QA findings and the "
        "panel totals; remove an outcome with almost no events from outcomes, or widen the "
        "study window."
    )


def _check_size(proto: Protocol, inputs: Inputs, steps: Steps, limit: int | None) -> None:
    """Stop if the rest of the run cannot fit in memory, else end stage 1 with its size."""
    people = int(inputs.clean["population"]["person_id"].nunique().execute())
    periods = proto.n_periods()
    memory.check_fits(
        proto.design,
        people=people,
        periods=periods,
        period=proto.period,
        stage=steps.labels[1],
        limit=limit,
    )
    steps.step(1, size=f"{people:,} people x {periods} {proto.period}s")


def _extracts_folder(data: Path) -> Path:
    if not data.is_dir():
        raise SpevidenceError(
            f"Extracts folder {data} not found. Give the folder holding population, "
            "referrals, gp_appointments, ae_attendances and admissions (.parquet or .csv)."
        )
    return data


def demo_key(seed: int) -> bytes:
    """The demo's pseudonymisation key: derived from the seed, for synthetic data only."""
    return hashlib.sha256(f"spevidence-demo-key-{seed}".encode()).hexdigest().encode()


def run_demo(out_dir: str | Path, *, persons: int = 5000, seed: int = 20260101) -> dict[str, Path]:
    """Generate the synthetic ICB of the ``demo`` scenario and evaluate it end to end."""
    out = Path(out_dir)
    data = out / "data"
    generate("demo", persons=persons, seed=seed, out=data, progress=True)
    key_file = out / "demo.key"
    key_file.write_bytes(demo_key(seed))
    os.chmod(key_file, 0o600)
    root = Path(__file__).resolve().parents[1]  # the spevidence package folder
    proto_path = root.parent / "protocols" / "demo.yaml"
    if not proto_path.is_file():
        proto_path = root / "_protocols" / "demo.yaml"
    res = run(proto_path, data, out, key_file=key_file)
    paths = {f"report ({fmt})": p for fmt, p in res.reports.items()}
    paths["bundle manifest"] = res.bundle / "manifest.json"
    return paths
