"""A small, clearly SYNTHETIC example bundle for tests, docs and template development.

Every number here is made up in code (no data, no model run). Counts are already
multiples of 5 and above 7, as disclosure control would leave them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spevidence.bundle import write_bundle
from spevidence.report.figures import make_figures

EXAMPLE_PROTOCOL: dict[str, Any] = {
    "name": "Example ICB social prescribing evaluation (SYNTHETIC)",
    "version": "1.0",
    "seed": 20260101,
    "study_window": {"start": "2021-04-01", "end": "2024-03-31"},
    "period": "month",
    "outcomes": ["gp", "ae", "admissions"],
    "matching": {"method": "risk_set", "distance": "logit", "ratio": 3, "caliper": 0.2},
    "did": {"model": "poisson", "window": [-12, 12], "reference": -1, "cluster": "person"},
    "sroi": {"horizon_years": 3, "discount": 0.035, "price_year": "2023/24"},
    "disclosure": {"threshold": 7, "rounding": 5},
}


def example_tables(*, pretrend_fails: bool = False, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Aggregate tables shaped like a real bundle's, with invented numbers."""
    rng = np.random.default_rng(seed)
    outcomes = ["gp", "ae", "admissions"]
    tables: dict[str, pd.DataFrame] = {}
    _add_data_quality(tables)
    _add_cohort(tables, rng)
    _add_trends(tables, outcomes)
    _add_did(tables, outcomes, rng, pretrend_fails=pretrend_fails)
    _add_sroi(tables, outcomes)
    return tables


def _add_data_quality(tables: dict[str, pd.DataFrame]) -> None:
    """QA checks, the cohort attrition and the linkage attrition."""
    tables["qa"] = pd.DataFrame(
        {
            "table": ["population", "referrals", "gp_appointments", "ae_attendances", "admissions"],
            "check": [
                "valid NHS number",
                "referral inside registration",
                "event inside registration",
                "duplicate rows",
                "discharge after admission",
            ],
            "severity": ["error", "warning", "warning", "warning", "warning"],
            "rows_failing": [0, 15, 240, 35, 10],
            "rows_checked": [48210, 2615, 392480, 30575, 9840],
        }
    )
    tables["attrition"] = pd.DataFrame(
        {
            "step": [
                "Registered population",
                "Referred to social prescribing",
                "Accepted referral",
                "Registered 12 months before referral",
                "Matched to comparators",
            ],
            "n": [48210, 2615, 1985, 1760, 1705],
            "n_dropped": [np.nan, 45595, 630, 225, 55],
            "reason": [
                None,
                "Never referred (comparator pool)",
                "Declined or did not engage",
                "Registered < 12 months",
                "No comparator within caliper",
            ],
        }
    )
    link_rows = [
        ("population", "input", "rows in the extract", 52410),
        ("population", "excluded", "invalid_nhs_number (person_id)", 35),
        ("population", "kept", "rows kept", 52375),
        ("referrals", "input", "rows in the extract", 3120),
        ("referrals", "excluded", "not_in_population (person_id)", 20),
        ("referrals", "kept", "rows kept", 3100),
        ("gp_appointments", "input", "rows in the extract", 1418650),
        ("gp_appointments", "excluded", "duplicate_row (*)", 1205),
        ("gp_appointments", "excluded", "outside_study_window (appointment_date)", 212340),
        ("gp_appointments", "kept", "rows kept", 1205105),
        ("ae_attendances", "input", "rows in the extract", 61230),
        ("ae_attendances", "excluded", "outside_study_window (arrival_date)", 9180),
        ("ae_attendances", "kept", "rows kept", 52050),
        ("admissions", "input", "rows in the extract", 20415),
        ("admissions", "excluded", "outside_study_window (admission_date)", 3060),
        ("admissions", "kept", "rows kept", 17355),
        ("panel_persons", "input", "people in the clean population", 50000),
        ("panel_persons", "excluded", "no day registered and alive in the study window", 1240),
        ("panel_persons", "kept", "people in the panel", 48760),
    ]
    tables["linkage_attrition"] = pd.DataFrame(
        link_rows, columns=["table", "stage", "reason", "rows"]
    )


def _add_cohort(tables: dict[str, pd.DataFrame], rng: np.random.Generator) -> None:
    """Cohort characteristics and covariate balance (draws from ``rng``)."""
    chars = [
        "age (years)",
        "female (%)",
        "IMD decile 1–2 (%)",
        "living alone (%)",
        "GP appointments, prior 12 months",
        "A&E attendances, prior 12 months",
    ]
    tables["cohort_characteristics"] = pd.DataFrame(
        {
            "characteristic": chars,
            "referred": [67.4, 61.2, 34.5, 38.0, 14.8, 1.9],
            "comparators": [67.1, 60.4, 33.9, 36.5, 14.2, 1.8],
            "comparator_pool": [49.8, 50.6, 22.1, 14.2, 5.1, 0.6],
        }
    )
    covs = [
        "age",
        "female",
        "imd_decile",
        "living_alone",
        "frailty",
        "gp_m4_6",
        "sexF",
        "admissions_prior_12m",
        "copd",
        "heart_failure",
    ]
    before = np.array([0.62, 0.21, -0.25, 0.55, 0.71, 0.98, 0.44, 0.39, 0.22, 0.18])
    after = before * rng.uniform(0.02, 0.09, len(covs))
    tables["balance"] = pd.DataFrame(
        {
            "covariate": covs,
            "smd_before": before.round(3),
            "smd_after": after.round(3),
            "variance_ratio_after": rng.uniform(0.9, 1.1, len(covs)).round(2),
        }
    )


def _add_trends(tables: dict[str, pd.DataFrame], outcomes: list[str]) -> None:
    """Mean outcome by event time, referred and comparators."""
    rows = []
    base = {"gp": 1.2, "ae": 0.15, "admissions": 0.05}
    for o in outcomes:
        for e in range(-12, 13):
            peak = 0.6 * np.exp(-((e + 1) ** 2) / 8.0)
            c = base[o] * (1 + peak)
            t = c * (1 - (0.12 if e >= 0 else 0.0))
            rows.append({"outcome": o, "event_time": e, "group": "referred", "mean": round(t, 4)})
            rows.append(
                {"outcome": o, "event_time": e, "group": "comparators", "mean": round(c, 4)}
            )
    tables["trends"] = pd.DataFrame(rows)


def _add_did(
    tables: dict[str, pd.DataFrame],
    outcomes: list[str],
    rng: np.random.Generator,
    *,
    pretrend_fails: bool,
) -> None:
    """Naive before/after, the 2x2 estimates, the event study (draws from ``rng``), pre-trends."""
    tables["naive_before_after"] = pd.DataFrame(
        {
            "outcome": outcomes,
            "n": [150, 150, 150],
            "mean_before": [1.62, 0.21, 0.07],
            "mean_after": [1.18, 0.2, 0.09],
            "change_pct": [-27.2, -4.8, 28.6],
            "change_log_se": [0.05, 0.12, 0.3],
            "change_conf_low": [-34.0, -24.7, -28.6],
            "change_conf_high": [-19.7, 20.4, 131.5],
        }
    )
    est = np.array([-0.128, -0.105, -0.06])
    se = np.array([0.031, 0.044, 0.071])
    tables["did_estimates"] = pd.DataFrame(
        {
            "outcome": outcomes,
            "model": ["poisson"] * 3,
            "term": ["treat:post"] * 3,
            "estimate": est,
            "std_error": se,
            "conf_low": est - 1.96 * se,
            "conf_high": est + 1.96 * se,
            "p_value": [0.0001, 0.017, 0.398],
            "n": [6820, 6820, 6820],
            "n_referred": [150, 150, 150],
        }
    )
    es_rows = []
    for o, b in zip(outcomes, est, strict=True):
        for e in range(-12, 13):
            if e == -1:
                continue
            drift = (0.01 * (e + 1)) if (pretrend_fails and e < 0) else 0.0
            v = (b if e >= 0 else 0.0) + drift + rng.normal(0, 0.015)
            s = 0.035
            es_rows.append(
                {
                    "outcome": o,
                    "event_time": e,
                    "estimate": round(v, 4),
                    "std_error": s,
                    "conf_low": round(v - 1.96 * s, 4),
                    "conf_high": round(v + 1.96 * s, 4),
                }
            )
    tables["event_study"] = pd.DataFrame(es_rows)
    tables["pretrend_test"] = pd.DataFrame(
        {
            "outcome": outcomes,
            "statistic": [9.8, 12.1, 7.4] if not pretrend_fails else [31.5, 12.1, 7.4],
            "df": [11, 11, 11],
            "p_value": [0.55, 0.36, 0.77] if not pretrend_fails else [0.0009, 0.36, 0.77],
        }
    )


def _add_sroi(tables: dict[str, pd.DataFrame], outcomes: list[str]) -> None:
    """SROI summary, value by outcome, sensitivity and the simulated ratios."""
    tables["sroi_summary"] = pd.DataFrame(
        {
            "measure": ["total_inputs", "present_value", "npv", "sroi_ratio", "payback_years"],
            "value": [412000.0, 783000.0, 371000.0, 1.9, 1.6],
        }
    )
    tables["sroi_by_outcome"] = pd.DataFrame(
        {
            "outcome": outcomes,
            "quantity": [2185.0, 240.0, 85.0],
            "proxy_gbp": [49.0, 280.0, 2750.0],
            "proxy_source": ["PSSRU 2023", "NCC 2024/25", "NCC 2024/25"],
            "present_value": [318000.0, 190000.0, 275000.0],
        }
    )
    tables["sroi_sensitivity"] = pd.DataFrame(
        {
            "parameter": [
                "GP unit cost",
                "Admission unit cost",
                "Benefit duration",
                "Drop-off",
                "Discount rate",
                "Link-worker cost",
            ],
            "ratio_low": [1.7, 1.5, 1.2, 1.6, 1.85, 1.65],
            "ratio_high": [2.1, 2.3, 2.6, 2.05, 1.95, 2.2],
            "ratio_base": [1.9] * 6,
        }
    )
    edges = np.round(np.arange(0.0, 4.01, 0.25), 2)
    counts = np.array([10, 15, 40, 95, 210, 380, 520, 610, 590, 470, 320, 185, 90, 45, 20, 10])
    tables["sroi_simulation"] = pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "count": counts,
            "prob_above_1": [float(counts[4:].sum() / counts.sum())] * len(counts),
        }
    )


def example_disclosure_log(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """A disclosure log shaped like :func:`spevidence.disclosure.control`'s (synthetic)."""
    rows = []
    for name in sorted(tables):
        rows.append(
            {
                "table": name,
                "column": "n" if "n" in tables[name].columns else "",
                "action": "rounded to nearest 5",
                "cells": 3,
            }
        )
    rows.append({"table": "qa", "column": "rows_failing", "action": "redacted (1-7)", "cells": 1})
    return pd.DataFrame(rows)


def write_example_bundle(
    out_dir: Path,
    *,
    pretrend_fails: bool = False,
    with_figures: bool = True,
    drop: tuple[str, ...] = (),
) -> Path:
    """Write the synthetic example bundle (for tests and docs) and return its path."""
    tables = {
        k: v for k, v in example_tables(pretrend_fails=pretrend_fails).items() if k not in drop
    }
    out_dir = Path(out_dir)
    inputs_dir = out_dir.parent / (out_dir.name + "_inputs")
    inputs_dir.mkdir(parents=True, exist_ok=True)
    inputs = {}
    for role in ("population", "referrals"):
        p = inputs_dir / f"{role}.csv"
        p.write_text("example,synthetic\n1,2\n", encoding="utf-8")
        inputs[role] = p
    figures = make_figures(tables) if with_figures else {}
    return write_bundle(
        out_dir,
        tables=tables,
        figures=figures,
        protocol=EXAMPLE_PROTOCOL,
        inputs=inputs,
        seed=int(EXAMPLE_PROTOCOL["seed"]),
        engine="duckdb",
        disclosure_log=example_disclosure_log(tables),
        extra={"synthetic": True, "disclosure": {"threshold": 7, "rounding": 5}},
    )
