"""What both designs' narratives share: number formatting, the display tables, and the
sections written the same way for a matched and a staggered bundle.

Every sentence is generated from bundle tables, so the words always match the numbers:
a failed pre-trend test, residual imbalance, wide confidence intervals or redacted small
numbers each produce their own caveat. Missing tables produce "not run" sentences.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import pandas as pd

from spevidence.disclosure import step
from spevidence.report._labels import as_percent, effect_scale, label, outcome_label
from spevidence.report.sections import NOT_AVAILABLE, ReportBundle, markdown_table, not_run

SMD_BAR = 0.1
SUPPRESSED = "Small numbers were suppressed and counts rounded to protect confidentiality."
WARN = "\n::: {.callout-warning}\n"  # opens a warning box (Quarto callout syntax)
ALPHA = 0.05
TRENDS_CAPTION = "Mean NHS use per person per month, by month from referral"
"""Caption of the matched design's trends figure (no outcome pooled by quarter)."""


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _f(v: Any, digits: int = 2) -> str:
    """A number to ``digits`` decimals with a true minus sign, never "−0.00"."""
    x = _num(v)
    if math.isnan(x):
        return NOT_AVAILABLE
    s = f"{abs(x):,.{digits}f}"
    return ("−" + s) if x < 0 and float(s.replace(",", "")) != 0 else s


def _money(v: Any, digits: int = 0) -> str:
    """Pounds with the sign before the symbol: −£0.02, not £−0.02."""
    x = _num(v)
    if math.isnan(x):
        return NOT_AVAILABLE
    s = _f(x, digits)
    return "−£" + s[1:] if s.startswith("−") else "£" + s


def step_decimals(row: pd.Series, rules: tuple[int, int] = (7, 5)) -> int:
    """Decimals of an estimate released at the step of its referred count (the disclosure
    step rule: 0.01 for 150 people gives 2); 3 when the row names no such count."""
    n = _num(row.get("n_referred"))
    if math.isnan(n) or n <= 0:
        return 3
    p = step(n, threshold=rules[0], rounding=rules[1])
    return max(0, -math.floor(math.log10(p) + 1e-9))


def _p(p: float) -> str:
    return NOT_AVAILABLE if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def did_display(df: pd.DataFrame) -> pd.DataFrame:
    """The DiD table as a reader wants it: linear effects per person per period, Poisson
    effects as rate ratios (not log coefficients), each with its 95% CI."""
    rows = []
    for _, r in df.iterrows():
        poisson = str(r.get("model")) == "poisson" and not math.isnan(_num(r.get("rate_ratio")))
        if poisson:
            scale = "rate ratio"
            est, lo, hi = r.get("rate_ratio"), r.get("rr_conf_low"), r.get("rr_conf_high")
        else:
            scale = "difference per person per period"
            est, lo, hi = r.get("estimate"), r.get("conf_low"), r.get("conf_high")
        d = 3 if poisson else step_decimals(r)
        p = _num(r.get("p_value"))
        rows.append(
            {
                "Outcome": outcome_label(r.get("outcome", "")),
                "Effect measure": scale,
                "Estimate (95% CI)": f"{_f(est, d)} ({_f(lo, d)} to {_f(hi, d)})",
                "p value": _p(p),
                "Observations": _f(r.get("n"), 0),
            }
        )
    return pd.DataFrame(rows)


def table1_display(df: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as text: whole numbers of people, one decimal for means and percentages."""
    out = df.copy()
    people = out["characteristic"].astype(str) == "People"
    for c in out.columns[1:]:
        out[c] = [_f(v, 0 if is_people else 1) for v, is_people in zip(out[c], people, strict=True)]
    return out


def wellbeing_display(df: pd.DataFrame) -> pd.DataFrame:
    """The paired wellbeing table in a width that fits a page: one row per instrument,
    means with SDs, the change with its 95% CI, and counts who improved or worsened."""

    def n_pct(n: Any, pct: Any) -> str:
        return NOT_AVAILABLE if math.isnan(_num(n)) else f"{_f(n, 0)} ({_f(pct, 0)}%)"

    rows = []
    for _, r in df.iterrows():
        p = _num(r.get("p_value"))
        rows.append(
            {
                "Measure": r.get("label", r.get("instrument")),
                "People": _f(r.get("people"), 0),
                "Baseline mean (SD)": f"{_f(r.get('baseline_mean'))} ({_f(r.get('baseline_sd'))})",
                "Follow-up mean (SD)": f"{_f(r.get('followup_mean'))} ({_f(r.get('followup_sd'))})",
                "Change (95% CI)": f"{_f(r.get('mean_change'))} "
                f"({_f(r.get('conf_low'))} to {_f(r.get('conf_high'))})",
                "p": _p(p),
                "Effect size (dz)": _f(r.get("effect_size_dz")),
                "Improved": n_pct(r.get("improved"), r.get("percent_improved")),
                "Worsened": n_pct(r.get("worsened"), r.get("percent_worsened")),
            }
        )
    return pd.DataFrame(rows)


def effect_size(row: pd.Series, period: str = "month", *, rules: tuple[int, int] = (7, 5)) -> str:
    """An estimate with its 95% CI: a percentage for log-scale (Poisson) and ratio models,
    else events per person per ``period``, at the precision it was released to
    (:func:`step_decimals`)."""
    est, lo, hi = _num(row["estimate"]), _num(row["conf_low"]), _num(row["conf_high"])
    scale = effect_scale(row.get("model", ""), row.get("scale"))
    if scale != "absolute":
        pct, plo, phi = (as_percent(x, scale) for x in (est, lo, hi))
        return f"{_f(pct, 1)}% (95% CI {_f(plo, 1)}% to {_f(phi, 1)}%)"
    d = step_decimals(row, rules)
    return f"{_f(est, d)} per person per {period} (95% CI {_f(lo, d)} to {_f(hi, d)})"


def _ci_vs_null(row: pd.Series) -> tuple[float, float]:
    """Confidence limits minus the null value (1 for rate ratios, else 0)."""
    lo, hi = _num(row["conf_low"]), _num(row["conf_high"])
    if effect_scale(row.get("model", ""), row.get("scale")) == "ratio":
        return lo - 1, hi - 1
    return lo, hi


def effect_sentence(
    row: pd.Series,
    *,
    period: str = "month",
    versus: str = "comparators",
    rules: tuple[int, int] = (7, 5),
) -> str:
    """One sentence for one estimate, with its interpretation (relative to ``versus``)."""
    outcome = outcome_label(row.get("outcome", "the outcome"))
    lo, hi = _ci_vs_null(row)
    size = effect_size(row, period, rules=rules)
    if lo > 0:
        verdict = f"an increase relative to {versus} that is unlikely to be due to chance"
    elif hi < 0:
        verdict = f"a reduction relative to {versus} that is unlikely to be due to chance"
    else:
        verdict = f"no clear evidence of a change relative to {versus} (the interval includes zero)"
    return f"**{outcome}**: {size}, {verdict}."


SROI_LABELS = {
    "total_inputs": "Value of inputs (present value)",
    "inputs": "Value of inputs (present value)",
    "present_value": "Present value of outcomes",
    "npv": "Net present value",
    "net_present_value": "Net present value",
    "sroi_ratio": "SROI ratio (£ of value per £1 invested)",
    "ratio": "SROI ratio (£ of value per £1 invested)",
    "payback_years": "Payback period (years)",
    "cashable_pv": "Cashable savings (present value)",
    "sroi_ratio_low": "SROI ratio, lower simulation bound",
    "sroi_ratio_high": "SROI ratio, upper simulation bound",
    "p_ratio_above_1": "Chance the ratio exceeds 1 (simulation)",
    # as spevidence.sroi's glance() and the pipeline's sroi_summary name them
    "ratio_conf_low": "SROI ratio, 2.5th percentile of simulations",
    "ratio_conf_high": "SROI ratio, 97.5th percentile of simulations",
    "p_ratio_gt_1": "Chance the ratio exceeds 1 (simulation)",
}


def _sroi_fmt(key: Any, value: Any) -> str:
    k = str(key)
    if k in ("total_inputs", "inputs", "present_value", "npv", "net_present_value", "cashable_pv"):
        return _money(value)
    if k in ("sroi_ratio", "ratio", "sroi_ratio_low", "sroi_ratio_high") or k.startswith(
        "ratio_conf_"
    ):
        return _money(value, 2)
    if k.startswith("p_") or k.startswith("prob_"):
        return f"{_f(_num(value) * 100, 0)}%"
    return _f(value, 1)


def _count_action(log: pd.DataFrame, word: str) -> int:
    act = next((c for c in ("action", "rule") if c in log.columns), None)
    if act is None:
        return 0
    hits = log[act].astype(str).str.lower().str.contains(word)
    if "cells" in log.columns:
        return int(pd.to_numeric(log.loc[hits, "cells"], errors="coerce").fillna(0).sum())
    return int(hits.sum())


def _short(v: Any, limit: int = 90) -> str:
    text = ", ".join(str(x) for x in v) if isinstance(v, list | tuple) else str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class NarrativeBase(ABC):
    """Sections of text for the templates, written from a :class:`ReportBundle`.

    One subclass per design (:class:`~spevidence.report.narrative.matched.MatchedNarrative`,
    :class:`~spevidence.report.narrative.staggered.StaggeredNarrative`) writes what differs;
    :func:`spevidence.report.narrative.Narrative` picks it once from the bundle.
    """

    rb: ReportBundle

    # -- what each design writes its own way ------------------------------------------
    @abstractmethod
    def summary(self) -> str:
        """The report's summary: design, headline effects, value for money, warnings."""

    @abstractmethod
    def board_findings(self) -> str:
        """Three or four plain-English bullets for a board: effects and value for money."""

    @abstractmethod
    def board_caveats(self) -> str:
        """Short caveats for a board, drawn from the checks in the bundle."""

    @abstractmethod
    def _observational(self) -> str:
        """What the design removes and what it cannot (first limitation)."""

    @abstractmethod
    def _effect_rows(self) -> list[dict[str, str]]:
        """Key-number rows of the headline effects."""

    @abstractmethod
    def _headline_rows(self) -> pd.DataFrame | None:
        """The headline estimates whose intervals the limitations read (None: not run)."""

    def _people_analysed(self) -> str:
        """Who the final count of the cohort flow counts."""
        return "Referred people"

    def _excluded(self) -> str:
        """A limitation on people the estimation left out ("" when none)."""
        return ""

    # -- sections of one design: the other design's bundle has none of their tables ----
    def balance(self) -> str:
        return not_run("balance")

    def trends_caption(self) -> str:
        """Caption of the trends figure."""
        return TRENDS_CAPTION

    def naive(self) -> str:
        return ""

    def regression_to_mean(self, *, words: bool = True) -> str:
        """The naive change of the referred beside the matched estimate ("" when the
        design has no naive comparison)."""
        return ""

    def did(self) -> str:
        return not_run("did_estimates")

    def pretrend(self) -> str:
        return not_run("event_study")

    def sensitivity(self) -> str:
        return not_run("sensitivity")

    def staggered(self) -> str:
        return not_run("staggered")

    # -- pieces reused by several sections ----------------------------------------------
    def _rules(self) -> tuple[int, int]:
        """The disclosure threshold and rounding the bundle was released under."""
        extra = self.rb.manifest.get("extra", {}) or {}
        rules = extra.get("disclosure") if isinstance(extra, dict) else None
        if not isinstance(rules, dict):
            rules = self.rb.protocol.get("disclosure", {})
        if not isinstance(rules, dict):
            return 7, 5
        return int(rules.get("threshold", 7)), int(rules.get("rounding", 5))

    def _final_count(self) -> str | None:
        att = self.rb.table("attrition")
        if att is None or att.empty:
            return None
        for c in ("n_remaining", "n", "remaining", "persons", "people", "rows"):
            if c in att.columns:
                vals = pd.to_numeric(att[c], errors="coerce").dropna()
                return _f(vals.iloc[-1], 0) if len(vals) else None
        return None

    def _pretrend_failures(self) -> list[str]:
        pt = self.rb.table("pretrend_test")
        if pt is None:
            pt = self.rb.table("staggered_pretrend")
            if pt is not None and "outcome" in pt.columns:
                pt = pt.assign(p_value=pd.to_numeric(pt["p_value"], errors="coerce"))
                pt = pt.groupby("outcome", sort=False)["p_value"].min().reset_index()
        if pt is None or "p_value" not in pt.columns:
            return []
        bad = pt[pd.to_numeric(pt["p_value"], errors="coerce") < ALPHA]
        if "outcome" in pt.columns:
            return [outcome_label(o) for o in bad["outcome"]]
        return ["the outcome"] * len(bad)

    def _pretrend_untested(self) -> bool:
        """A pre-trend table is there but no test could be computed (all p-values missing,
        e.g. a singular covariance): say so rather than "passed"."""
        pt = self.rb.table("pretrend_test")
        if pt is None:
            pt = self.rb.table("staggered_pretrend")
        if pt is None or not len(pt) or "p_value" not in pt.columns:
            return False
        return bool(pd.to_numeric(pt["p_value"], errors="coerce").isna().all())

    def _imbalanced(self) -> list[str]:
        bal = self.rb.table("balance")
        if bal is None:
            return []
        after = next((c for c in ("smd_after", "smd_matched", "smd") if c in bal.columns), None)
        var = next((c for c in ("covariate", "variable", "term") if c in bal.columns), None)
        if after is None or var is None:
            return []
        vals = pd.to_numeric(bal[after], errors="coerce").abs()
        return [label(v) for v in bal.loc[vals > SMD_BAR, var]]

    def _row_loss(self) -> str:
        """The caveat when the protocol let tables lose more rows than the default bar
        (the QA finding ``row_loss_above_default``; "" when there is none)."""
        from spevidence.data.coverage import MAX_ROW_LOSS, pct

        qa = self.rb.table("qa")
        if qa is None or "rule" not in qa.columns or "table" not in qa.columns:
            return ""
        tables = qa.loc[qa["rule"] == "row_loss_above_default", "table"].astype(str).tolist()
        if not tables:
            return ""
        spec = self.rb.protocol.get("qa")
        bar = spec.get("max_row_loss") if isinstance(spec, dict) else None
        allowed = f" to {pct(_num(bar))}" if bar is not None else ""
        return (
            f"data validation excluded more than {pct(MAX_ROW_LOSS)} of the usable rows of "
            f"{', '.join(t.replace('_', ' ') for t in tables)}, the default limit, which the "
            f"protocol raised{allowed} (qa.max_row_loss); the estimates rest on the rows kept"
        )

    def _sroi_values(self) -> dict[str, Any]:
        s = self.rb.table("sroi_summary")
        if s is None or s.empty:
            return {}
        key = next((c for c in ("measure", "metric", "quantity", "name") if c in s.columns), None)
        if key is not None and "value" in s.columns:
            return dict(zip(s[key].astype(str), s["value"], strict=True))
        return {str(k): v for k, v in s.iloc[0].items()}

    def _sroi_effect(self) -> str:
        """Which estimate the SROI values (the pipeline records it in the manifest)."""
        extra = self.rb.manifest.get("extra", {}) or {}
        return str(extra.get("sroi_effect", "")) if isinstance(extra, dict) else ""

    def _sroi_sentence(self) -> str:
        """The summary's sentence on value for money ("" when no SROI was run)."""
        sv = self._sroi_values()
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        if ratio is None or pd.isna(ratio):
            return ""
        txt = (
            f"\nEach £1 invested returned an estimated **{_money(ratio, 2)}** of social value "
            f"(social return on investment)"
        )
        npv = sv.get("npv", sv.get("net_present_value"))
        if npv is not None and not pd.isna(npv):
            txt += f"; net present value {_money(npv)}"
        return txt + "."

    def _board_value(self) -> list[str]:
        """The board's value-for-money bullet (none when no SROI was run)."""
        sv = self._sroi_values()
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        if ratio is None or pd.isna(ratio):
            return []
        verdict = "more than" if _num(ratio) > 1 else "less than"
        return [
            f"- **Value for money**: about {_money(ratio, 2)} of social value for each £1 spent "
            f"({verdict} it cost)."
        ]

    # -- sections -------------------------------------------------------------------
    def synthetic_banner(self) -> str:
        extra = self.rb.manifest.get("extra", {}) or {}
        if isinstance(extra, dict) and extra.get("synthetic"):
            return (
                WARN + "**Synthetic example.** The numbers in this report are invented "
                "for demonstration; they describe no real people or services.\n:::\n"
            )
        return ""

    def anchor(self) -> str:
        """The title-page line that anchors the report to its bundle: the SHA-256 of the
        bundle's manifest, which lists the hash of every file in it."""
        sha = self.rb.manifest_sha256
        if sha is None:
            return "\n*This report's bundle has no manifest: nothing anchors its numbers.*\n"
        return (
            "\n*Results bundle, SHA-256 of its manifest.json (check it with `spevidence "
            f"reproduce BUNDLE`):*\\\n`{sha}`\n"
        )

    def key_numbers(self, *, effects: bool = True) -> str:
        """A small table of the headline numbers (cohort, effects unless ``effects`` is
        false, SROI, checks)."""
        rows: list[dict[str, str]] = []
        n = self._final_count()
        if n is not None:
            rows.append({"item": f"{self._people_analysed()} in the final analysis", "value": n})
        rows += self._effect_rows() if effects else []
        sv = self._sroi_values()
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        if ratio is not None and not pd.isna(ratio):
            rows.append({"item": "Social value per £1 invested", "value": _money(ratio, 2)})
        rows += self._check_rows()
        if not rows:
            return ""
        return markdown_table(
            pd.DataFrame(rows),
            caption="Key numbers",
            label="tbl-key",
            rename={"item": "Measure", "value": "Result"},
        )

    def _check_rows(self) -> list[dict[str, str]]:
        """Key-number rows of the design checks: parallel pre-trends and balance."""
        rows: list[dict[str, str]] = []
        if self.rb.has("pretrend_test") or self.rb.has("staggered_pretrend"):
            bad = self._pretrend_failures()
            rows.append(
                {
                    "item": "Parallel pre-referral trends",
                    "value": "failed for " + ", ".join(bad)
                    if bad
                    else ("not computed" if self._pretrend_untested() else "passed"),
                }
            )
        if self.rb.has("balance"):
            imb = self._imbalanced()
            rows.append(
                {
                    "item": f"Balance after matching (all |SMD| < {SMD_BAR})",
                    "value": "yes" if not imb else f"no ({len(imb)} imbalanced)",
                }
            )
        return rows

    def protocol(self) -> str:
        proto = self.rb.protocol
        if not proto:
            return "\n*The protocol was not included in the bundle.*\n"
        rows = []
        for k in sorted(proto):
            v = proto[k]
            if isinstance(v, dict):
                text = "; ".join(f"{kk}: {_short(vv)}" for kk, vv in sorted(v.items()))
            else:  # the title and description in full
                text = ", ".join(str(x) for x in v) if isinstance(v, list | tuple) else str(v)
            rows.append({"setting": str(k).replace("_", " "), "value": text})
        return markdown_table(pd.DataFrame(rows), caption="Protocol settings", label="tbl-protocol")

    def sroi(self) -> str:
        sv = self._sroi_values()
        if not sv:
            return not_run("sroi_summary")
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        text = ""
        if ratio is not None and not pd.isna(ratio):
            verdict = "more" if _num(ratio) > 1 else "less"
            text = (
                f"\nThe estimated social return is **{_money(ratio, 2)} per £1** invested: the "
                f"service created {verdict} value than it cost, under the assumptions below. The "
                "comparator group already accounts for what would have happened anyway "
                "(deadweight), so no further deadweight is subtracted.\n"
            )
        source = self._sroi_effect()
        if source:
            text += f"\nThe change in NHS use that is valued is {source}.\n"
        s = self.rb.table("sroi_summary")
        if s is None:
            return text
        key = next((c for c in ("measure", "metric", "quantity", "name") if c in s.columns), None)
        if key is not None and "value" in s.columns:
            rows = [
                {
                    "measure": SROI_LABELS.get(str(k), str(k).replace("_", " ")),
                    "value": _sroi_fmt(k, v),
                }
                for k, v in zip(s[key], s["value"], strict=True)
            ]
            return text + markdown_table(
                pd.DataFrame(rows),
                caption="SROI summary",
                label="tbl-sroi_summary",
                rename={"measure": "Measure", "value": "Value"},
            )
        return text + self.rb.table_md("sroi_summary", caption="SROI summary")

    def simulation(self) -> str:
        sim = self.rb.table("sroi_simulation")
        if sim is None or sim.empty:
            return ""
        p = float("nan")
        if "prob_above_1" in sim.columns:
            p = _num(sim["prob_above_1"].iloc[0])
        else:
            sv = self._sroi_values()  # the pipeline's name, then an older one
            p = _num(sv.get("p_ratio_gt_1", sv.get("p_ratio_above_1")))
        if math.isnan(p):
            return ""
        return f"\nIn {_f(p * 100, 0)}% of simulations the SROI ratio exceeded 1 (break-even).\n"

    def limitations(self) -> str:
        items = [self._observational()]
        bad = self._pretrend_failures()
        if bad:
            items.append(
                "The pre-trend test failed for " + ", ".join(bad) + "; estimates for these "
                "outcomes should be treated as unreliable."
            )
        imb = self._imbalanced()
        if imb:
            items.append(
                f"Residual imbalance after matching ({', '.join(imb)}) may bias the estimates."
            )
        if left := self._excluded():
            items.append(left)
        if wide := self._wide_intervals():
            items.append(
                "The confidence intervals for " + ", ".join(wide) + " include zero: the data "
                "cannot distinguish a small effect from none."
            )
        log = self.rb.disclosure_log()
        if log is not None and not log.empty:
            n_red = _count_action(log, "redact")
            if n_red:
                items.append(
                    f"{n_red} small number(s) were redacted for disclosure control; some "
                    "subgroups are too small to report."
                )
        missing = []
        if not (self.rb.has("event_study") or self.rb.has("staggered")):
            missing.append("an event study with a pre-trend check")
        if not self.rb.has("sroi_summary"):
            missing.append("the social return on investment")
        if missing:
            items.append("Not run in this evaluation: " + ", ".join(missing) + ".")
        items.append(
            "Outcomes come from routinely recorded data; activity not coded, or delivered "
            "outside the linked services, is not counted."
        )
        return "\n" + "\n".join(f"- {i}" for i in items) + "\n"

    def _wide_intervals(self) -> list[str]:
        """Outcomes whose headline 95% CI includes the null."""
        main = self._headline_rows()
        if main is None or not len(main):
            return []
        return [
            outcome_label(r.get("outcome", ""))
            for _, r in main.iterrows()
            if _ci_vs_null(r)[0] <= 0 <= _ci_vs_null(r)[1]
        ]

    def disclosure(self) -> str:
        log = self.rb.disclosure_log()
        threshold, rounding = self._rules()
        text = (
            "\nAll tables and the numbers behind every figure passed statistical disclosure "
            f"control before leaving the secure environment: counts from 1 to {threshold} were "
            f"redacted and other counts rounded to the nearest {rounding}, with secondary "
            "suppression so that a redacted count cannot be recovered from totals. Counts may "
            "therefore not add up exactly. The report holds no patient-level data.\n"
        )
        if log is None or log.empty:
            return text + "\n*The disclosure log is empty.*\n"
        by = next((c for c in ("table", "table_name") if c in log.columns), None)
        act = next((c for c in ("action", "rule") if c in log.columns), None)
        if by and act:
            if "cells" in log.columns:
                log = log.assign(cells=pd.to_numeric(log["cells"], errors="coerce").fillna(0))
                summary = log.groupby([by, act], sort=True)["cells"].sum().reset_index()
                summary["cells"] = summary["cells"].astype(int)
            else:
                summary = log.groupby([by, act], sort=True).size().reset_index(name="cells")
            return text + markdown_table(
                summary,
                caption="Disclosure control log (cells per table and action)",
                label="tbl-disclosure",
            )
        return text + markdown_table(log, caption="Disclosure control log", label="tbl-disclosure")

    def reproducibility(self) -> str:
        m = self.rb.manifest
        if not m:
            return "\n*The bundle has no manifest.*\n"
        lines = [
            "\nEverything in this report was rendered from the results bundle alone. To check "
            "that no file has changed and re-render, run `spevidence reproduce BUNDLE`; with "
            "access to the data, `spevidence reproduce BUNDLE --data DIR` re-runs the protocol and "
            "compares every result.\n",
            f"- Manifest (manifest.json) SHA-256: `{self.rb.manifest_sha256}`",
            f"- spevidence version: {m.get('spevidence_version', 'not recorded')}",
            f"- Protocol hash (SHA-256): `{m.get('protocol_sha256', 'not recorded')}`",
            f"- Random seed: {m.get('seed', 'not recorded')}",
            f"- Data engine: {m.get('engine', 'not recorded')}",
            f"- Files in the bundle: {len(m.get('files', {}))}",
        ]
        out = "\n".join(lines) + "\n"
        inputs = m.get("inputs", {}) or {}
        if inputs:
            rows = [
                {
                    "input": k,
                    "file": v.get("file"),
                    "rows": v.get("rows"),
                    "sha256 (first 16)": str(v.get("sha256", ""))[:16],
                }
                for k, v in sorted(inputs.items())
            ]
            out += markdown_table(
                pd.DataFrame(rows),
                caption="Input extracts (full hashes in manifest.json)",
                label="tbl-inputs",
            )
        versions = m.get("versions", {}) or {}
        if versions:
            listed = ", ".join(f"{k} {v}" for k, v in versions.items())
            out += f"\n**Software versions:** {listed}.\n"
        plat = m.get("platform", {}) or {}
        if plat:
            out += f"\n**Platform:** {plat.get('system', '')} {plat.get('machine', '')}.\n"
        return out
