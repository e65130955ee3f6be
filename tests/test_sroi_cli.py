"""The `spevidence sroi` command."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from spevidence.cli import app
from spevidence.errors import DataError


def _run(*args: str):
    return CliRunner().invoke(app, ["sroi", *args])


def test_sroi_command_writes_tables_and_figures(tmp_path):
    eff = pd.DataFrame(
        {
            "outcome": ["gp", "ae", "admissions", "gp"],
            "model": ["linear", "linear", "linear", "poisson"],
            "estimate": [-1.2, -0.1, -0.02, -0.3],
            "std_error": [0.3, 0.05, 0.01, 0.1],
        }
    )
    eff.to_csv(tmp_path / "did.csv", index=False)
    out = tmp_path / "out"
    r = _run(
        str(tmp_path / "did.csv"),
        "--persons",
        "800",
        "--wte",
        "3",
        "--model",
        "linear",
        "--n-sims",
        "200",
        "--seed",
        "4",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    assert "Value per £1" in r.output
    summary = pd.read_csv(out / "sroi_summary.csv")
    assert summary["n_sims"].iloc[0] == 200 and summary["seed"].iloc[0] == 4
    for name in ("sroi_waterfall", "sroi_tornado", "sroi_simulation"):
        assert (out / f"{name}.png").stat().st_size > 5000
    # two rows for gp without --model: a user error (main() turns it into exit 1)
    r = _run(str(tmp_path / "did.csv"), "--persons", "800", "--out", str(out))
    assert isinstance(r.exception, DataError)
    assert "more than one row" in str(r.exception)
