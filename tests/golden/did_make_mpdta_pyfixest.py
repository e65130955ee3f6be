"""Regenerate tests/golden/did_mpdta_pyfixest.csv (reference values from pyfixest).

Run from the repository root:  python tests/golden/did_make_mpdta_pyfixest.py
Data: mpdta (Callaway & Sant'Anna 2021) as shipped by the `moderndid` package.
Models: county + year fixed effects, CRV1 clustered by county, pyfixest default
small-sample corrections; fepois with tightened IRLS tolerances (1e-13).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyfixest as pf

warnings.simplefilter("ignore")
spec = importlib.util.find_spec("moderndid")
assert spec is not None and spec.origin is not None
d = pd.read_pickle(Path(spec.origin).parent / "core" / "datasets" / "mpdta_long.pkl.gz")
d["D"] = ((d["first.treat"] > 0) & (d["year"] >= d["first.treat"])).astype(int)
d["emp"] = np.round(np.exp(d["lemp"]))
d["tp"] = ((d["first.treat"] > 0) & (d["year"] >= 2006)).astype(int)
tight = {"iwls_tol": 1e-13, "iwls_maxiter": 200, "fixef_tol": 1e-13}
rows = []
for name, fit, term in [
    ("twfe_linear", pf.feols("lemp ~ D | countyreal + year", d, vcov={"CRV1": "countyreal"}), "D"),
    (
        "twfe_poisson",
        pf.fepois("emp ~ D | countyreal + year", d, vcov={"CRV1": "countyreal"}, **tight),
        "D",
    ),
    ("2x2_linear", pf.feols("lemp ~ tp | countyreal + year", d, vcov={"CRV1": "countyreal"}), "tp"),
    (
        "2x2_poisson",
        pf.fepois("emp ~ tp | countyreal + year", d, vcov={"CRV1": "countyreal"}, **tight),
        "tp",
    ),
]:
    tid = fit.tidy().loc[term]
    rows.append(
        {
            "model": name,
            "estimate": float(tid["Estimate"]),
            "std_error": float(tid["Std. Error"]),
            "conf_low": float(tid["2.5%"]),
            "conf_high": float(tid["97.5%"]),
            "n": int(fit._N),
            "pyfixest_version": pf.__version__,
        }
    )
out = Path(__file__).with_name("did_mpdta_pyfixest.csv")
pd.DataFrame(rows).to_csv(out, index=False, float_format="%.17g")
print(out)
