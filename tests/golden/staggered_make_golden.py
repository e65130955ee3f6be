"""Generate the Callaway-Sant'Anna golden files for ``tests/test_did_staggered.py``.

Reference implementation: ``moderndid`` 0.2 (a line-by-line port of R ``did``
2.x / ``DRDID``, with the group-aggregation standard-error fix of did PR #223),
run on the public ``mpdta`` data that ``moderndid`` ships
(``moderndid.load_mpdta()``; 500 US counties x 2003-2007; outcome ``lemp``,
unit ``countyreal``, cohort ``first.treat``, covariate ``lpop``).

Every combination of control group x estimation method x base period x
covariates is run with analytic (influence-function) standard errors
(``boot=False``) and the four ``aggte`` aggregations. Output:

* ``staggered_mpdta_attgt.csv``  one row per (combination, group, time)
* ``staggered_mpdta_aggte.csv``  one row per (combination, aggregation, level),
  level ``overall`` carries ``overall_att`` / ``overall_se``

Run from the repository root::

    python tests/golden/staggered_make_golden.py
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent


def main() -> None:
    import moderndid as md

    warnings.simplefilter("ignore")
    data = md.load_mpdta()
    att_rows: list[dict[str, object]] = []
    agg_rows: list[dict[str, object]] = []
    combos = itertools.product(
        ["nevertreated", "notyettreated"],
        ["dr", "ipw", "reg"],
        ["varying", "universal"],
        [None, "~lpop"],
    )
    for control, method, base, xf in combos:
        key = {
            "control": "never" if control == "nevertreated" else "notyet",
            "method": method,
            "base_period": base,
            "xformla": xf or "",
        }
        res = md.att_gt(
            data,
            yname="lemp",
            tname="year",
            idname="countyreal",
            gname="first.treat",
            xformla=xf,
            boot=False,
            cband=False,
            est_method=method,
            control_group=control,
            base_period=base,
        )
        for g, t, a, s in zip(res.groups, res.times, res.att_gt, res.se_gt, strict=True):
            att_rows.append(
                {**key, "group": int(g), "time": int(t), "att": float(a), "se": float(s)}
            )
        for kind in ["simple", "dynamic", "group", "calendar"]:
            agg = md.aggte(res, type=kind, boot=False, cband=False)
            agg_rows.append(
                {
                    **key,
                    "kind": kind,
                    "level": "overall",
                    "value": np.nan,
                    "att": agg.overall_att,
                    "se": agg.overall_se,
                }
            )
            if kind != "simple":
                for lv, a, s in zip(
                    agg.event_times, agg.att_by_event, agg.se_by_event, strict=True
                ):
                    agg_rows.append(
                        {**key, "kind": kind, "level": "by", "value": float(lv), "att": a, "se": s}
                    )
        print(key, "done", flush=True)
    pd.DataFrame(att_rows).to_csv(
        HERE / "staggered_mpdta_attgt.csv", index=False, float_format="%.15g"
    )
    pd.DataFrame(agg_rows).to_csv(
        HERE / "staggered_mpdta_aggte.csv", index=False, float_format="%.15g"
    )


if __name__ == "__main__":
    main()
