"""Hostile memory limits (issue 21): a run that cannot fit in its --memory-limit stops with
one clear paragraph naming the stage and the fix, exit 1 (not 137, a kill by the operating
system), no traceback, no identifier, no half-written output.

Two layers (spevidence.memory): the estimate before the heavy stages (people x periods,
"would need about"), and the watchdog that samples the resident memory of the process
tree during the run ("stopped in the stage"). Each case runs the real command in a
subprocess on a small synthetic ICB, its standard error a pipe, so the plain progress
lines show where the run stopped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hostile import assert_clean, assert_no_partial_output, cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def icb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic ICB for the shipped matched protocol (kent-ae, pseudonyms)."""
    data = tmp_path_factory.mktemp("memory") / "data"
    done = cli("synth", "--scenario", "kent-ae", "--persons", "2000", "--seed", "5", "--out", data)
    assert done.code == 0, done.text
    return data


CASES = [
    # (limit, what the message says, the stage it names, the last stage the log started)
    pytest.param(
        "1GB",
        ["would need about 2.0", "2,000 people x 48 months", "--memory-limit of 1GB",
         "larger --memory-limit", "fewer months"],
        "before the stage 'Link person × period panel'",
        "start 1/7 Read, validate and pseudonymise extracts",
        id="estimate-exceeds-limit",
    ),
    pytest.param(
        "200MB",
        ["resident memory of spevidence and its child processes reached",
         "--memory-limit of 200MB", "larger --memory-limit"],
        "in the stage 'Read, validate and pseudonymise extracts'",
        "start 1/7 Read, validate and pseudonymise extracts",
        id="watchdog-past-limit",
    ),
    pytest.param(
        "1.5 GiB",
        ["would need about 2.0", "--memory-limit of 1.5 GiB (1.50 GiB)"],
        "before the stage 'Link person × period panel'",
        "start 1/7",
        id="limit-in-GiB",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("limit", "says", "stage", "log"), CASES)
def test_low_memory_limit_stops_clearly(
    icb: Path, tmp_path: Path, limit: str, says: list[str], stage: str, log: str
) -> None:
    out_dir = tmp_path / "out"
    proto = ROOT / "protocols" / "kent-ae.yaml"
    args = ["run", proto, "--data", icb, "--out", out_dir, "--format", "html"]
    out = cli(*args, "--memory-limit", limit)
    ids = pd.read_parquet(icb / "population.parquet", columns=["person_id"])["person_id"]
    assert_clean(out, code=1, identifiers=ids.head(50).tolist(), says=[*says, stage])
    assert out.code != 137
    assert log in out.stderr  # the batch log shows where the run was
    assert out.stderr.count("Error:") == 1  # one paragraph
    assert_no_partial_output(out_dir)
    assert not (out_dir / ".spevidence-cache" / "panel").exists()


def test_bad_memory_limit_is_a_usage_error_before_anything_runs(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    out = cli("run", ROOT / "protocols" / "kent-ae.yaml", "--data", tmp_path / "data",
              "--out", tmp_path / "o", "--memory-limit", "lots")  # fmt: skip
    assert_clean(out, code=1, says=["--memory-limit must be a size such as 4GB"])
    assert "start 1/7" not in out.stderr
