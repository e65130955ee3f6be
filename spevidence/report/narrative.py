"""Plain-English text written from the released results (summary, limitations, appendix).

Every sentence is generated from bundle tables, so the words always match the numbers:
a failed pre-trend test, residual imbalance, wide confidence intervals or redacted small
numbers each produce their own caveat. Missing tables produce "not run" sentences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from spevidence.did.headline import headline_estimator
from spevidence.report._labels import as_percent, effect_scale, outcome_label
from spevidence.report.sections import ReportBundle, markdown_table, not_run

SMD_BAR = 0.1
# reasons in the staggered estimators' attrition, as a reader would say them
PLAIN_REASONS = {
    "unit not observed in every period (balanced panel required)": "not registered for the "
    "whole study window",
}
SUPPRESSED = "Small numbers were suppressed and counts rounded to protect confidentiality."
WARN = "\n::: {.callout-warning}\n"  # opens a warning box (Quarto callout syntax)
ALPHA = 0.05


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _f(v: Any, digits: int = 2) -> str:
    x = _num(v)
    if math.isnan(x):
        return "–"
    s = f"{abs(x):,.{digits}f}"
    return ("−" + s) if x < 0 else s


def _money(v: Any) -> str:
    x = _num(v)
    if math.isnan(x):
        return "–"
    s = f"£{abs(x):,.0f}"
    return ("−" + s) if x < 0 else s


def _main_rows(did: pd.DataFrame) -> pd.DataFrame:
    df = did
    if "analysis" in df.columns:
        main = df[df["analysis"].isna() | (df["analysis"].astype(str).str.lower() == "main")]
        if len(main):
            df = main
    if "outcome" in df.columns:
        df = df.groupby("outcome", sort=False).head(1)
    return df.reset_index(drop=True)


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
        p = _num(r.get("p_value"))
        rows.append(
            {
                "Outcome": outcome_label(r.get("outcome", "")),
                "Effect measure": scale,
                "Estimate (95% CI)": f"{_f(est, 3)} ({_f(lo, 3)} to {_f(hi, 3)})",
                "p value": "–" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}"),
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
        return "–" if math.isnan(_num(n)) else f"{_f(n, 0)} ({_f(pct, 0)}%)"

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
                "p": "–" if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}"),
                "Effect size (dz)": _f(r.get("effect_size_dz")),
                "Improved": n_pct(r.get("improved"), r.get("percent_improved")),
                "Worsened": n_pct(r.get("worsened"), r.get("percent_worsened")),
            }
        )
    return pd.DataFrame(rows)


def effect_size(row: pd.Series, period: str = "month") -> str:
    """An estimate with its 95% CI: a percentage for log-scale (Poisson) and ratio models,
    else events per person per ``period``."""
    est, lo, hi = _num(row["estimate"]), _num(row["conf_low"]), _num(row["conf_high"])
    scale = effect_scale(row.get("model", ""), row.get("scale"))
    if scale != "absolute":
        pct, plo, phi = (as_percent(x, scale) for x in (est, lo, hi))
        return f"{_f(pct, 1)}% (95% CI {_f(plo, 1)}% to {_f(phi, 1)}%)"
    return f"{_f(est, 3)} per person per {period} (95% CI {_f(lo, 3)} to {_f(hi, 3)})"


def _ci_vs_null(row: pd.Series) -> tuple[float, float]:
    """Confidence limits minus the null value (1 for rate ratios, else 0)."""
    lo, hi = _num(row["conf_low"]), _num(row["conf_high"])
    if effect_scale(row.get("model", ""), row.get("scale")) == "ratio":
        return lo - 1, hi - 1
    return lo, hi


def _staggered_effect(row: pd.Series) -> str:
    """A staggered estimate with its 95% CI, in events per person per period."""
    if pd.isna(row.get("estimate")):
        return "withheld (too few people)"
    return (
        f"{_f(row['estimate'], 3)} (95% CI {_f(row['conf_low'], 3)} to {_f(row['conf_high'], 3)})"
    )


def effect_sentence(row: pd.Series, *, period: str = "month", versus: str = "comparators") -> str:
    """One sentence for one estimate, with its interpretation (relative to ``versus``)."""
    outcome = outcome_label(row.get("outcome", "the outcome"))
    lo, hi = _ci_vs_null(row)
    size = effect_size(row, period)
    if lo > 0:
        verdict = f"an increase relative to {versus} that is unlikely to be due to chance"
    elif hi < 0:
        verdict = f"a reduction relative to {versus} that is unlikely to be due to chance"
    else:
        verdict = f"no clear evidence of a change relative to {versus} (the interval includes zero)"
    return f"**{outcome}**: {size}, {verdict}."


@dataclass
class Narrative:
    """Sections of text for the templates, written from a :class:`ReportBundle`."""

    rb: ReportBundle

    # -- pieces reused by several sections ----------------------------------------
    def _period(self) -> str:
        return str(self.rb.protocol.get("period", "month"))

    def _is_staggered(self) -> bool:
        """A ``design: staggered`` bundle (staggered estimates, no matched DiD)."""
        return self.rb.has("staggered") and not self.rb.has("did_estimates")

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
        return [str(v).replace("_", " ") for v in bal.loc[vals > SMD_BAR, var]]

    def _row_loss(self) -> str:
        """The caveat when the protocol let tables lose more rows than the default bar
        (the QA finding ``row_loss_above_default``; "" when there is none)."""
        from spevidence.data._coverage import MAX_ROW_LOSS, pct

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
            f"\nEach £1 invested returned an estimated **£{_f(ratio)}** of social value "
            f"(social return on investment)"
        )
        npv = sv.get("npv", sv.get("net_present_value"))
        if npv is not None and not pd.isna(npv):
            txt += f"; net present value {_money(npv)}"
        return txt + "."

    # -- sections -------------------------------------------------------------------
    def synthetic_banner(self) -> str:
        extra = self.rb.manifest.get("extra", {}) or {}
        if isinstance(extra, dict) and extra.get("synthetic"):
            return (
                WARN + "**Synthetic example.** The numbers in this report are invented "
                "for demonstration; they describe no real people or services.\n:::\n"
            )
        return ""

    def key_numbers(self) -> str:
        """A small table of the headline numbers (cohort, effects, SROI, checks)."""
        rows: list[dict[str, str]] = []
        n = self._final_count()
        if n is not None:
            who = "Referred people"
            if self._is_staggered() and self._staggered_spec().get("cohort") == "service_start":
                who = "People in PCNs with a link-worker service"
            rows.append({"item": f"{who} in the final analysis", "value": n})
        did = self.rb.table("did_estimates")
        if did is not None and not did.empty:
            for _, r in _main_rows(did).iterrows():
                rows.append(
                    {
                        "item": f"Effect on {outcome_label(r.get('outcome', ''))}",
                        "value": effect_size(r, self._period()),
                    }
                )
        for _, r in self._staggered_main().iterrows():
            rows.append(
                {
                    "item": f"Effect on {outcome_label(r['outcome'])} ({r['estimator']}, per "
                    f"person per {self._staggered_period()})",
                    "value": _staggered_effect(r),
                }
            )
        sv = self._sroi_values()
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        if ratio is not None and not pd.isna(ratio):
            rows.append({"item": "Social value per £1 invested", "value": f"£{_f(ratio)}"})
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
        if not rows:
            return ""
        return markdown_table(
            pd.DataFrame(rows),
            caption="Key numbers",
            label="tbl-key",
            rename={"item": "Measure", "value": "Result"},
        )

    def summary(self) -> str:
        if self._is_staggered():
            return self._staggered_summary()
        lines: list[str] = [self.synthetic_banner()]
        did = self.rb.table("did_estimates")
        n = self._final_count()
        intro = "This report compares people referred to social prescribing with matched "
        intro += "people who had not been referred at the same moment, before and after referral "
        intro += "(difference-in-differences). "
        if n is not None:
            intro += (
                f"The final analysis included {n} referred people, the last step of the cohort "
                "flow (rounded for disclosure control). "
            )
        lines.append(intro)
        if did is None or did.empty:
            lines.append("\n" + not_run("did_estimates"))
        else:
            lines.append(
                "\nKey findings (change in NHS use caused by referral, relative to comparators):\n"
            )
            for _, row in _main_rows(did).iterrows():
                lines.append(f"- {effect_sentence(row, period=self._period())}")
        if sroi := self._sroi_sentence():
            lines.append(sroi)
        caveats = []
        if self._pretrend_failures():
            caveats.append(
                "before referral, the referred group's use was already diverging from the "
                f"comparators' ({', '.join(self._pretrend_failures())}), "
                "so the estimates may be biased"
            )
        if self._imbalanced():
            caveats.append(
                f"{len(self._imbalanced())} characteristic(s) remained imbalanced after matching"
            )
        if loss := self._row_loss():
            caveats.append(loss)
        if caveats:
            lines.append(WARN + "**Read with care:** " + "; ".join(caveats) + ".\n:::")
        naive = self.rb.table("naive_before_after")
        if naive is not None and not naive.empty:
            lines.append(
                "\nA simple before-and-after comparison of the referred group alone (the method "
                "of most published evaluations) is shown for contrast in the trends section; it "
                "mixes the effect of the service with the natural fall in use after a peak "
                "(regression to the mean)."
            )
        return "\n".join(lines) + "\n"

    def board_findings(self) -> str:
        """Three or four plain-English bullets for a board: effects and value for money."""
        if self._is_staggered():
            return self._staggered_board()
        lines: list[str] = []
        did = self.rb.table("did_estimates")
        n = self._final_count()
        who = f"{n} people referred to link workers" if n else "People referred to link workers"
        lines.append(
            f"- {who} were compared with similar people not referred at the same time, "
            "before and after referral."
        )
        if did is None or did.empty:
            lines.append("- The main comparison was not run in this evaluation.")
        else:
            for _, r in _main_rows(did).iterrows():
                lines.append(f"- {effect_sentence(r, period=self._period())}")
        lines += self._board_value()
        naive = self.rb.table("naive_before_after")
        if naive is not None and not naive.empty and "change_pct" in naive.columns:
            avg = pd.to_numeric(naive["change_pct"], errors="coerce").mean()
            lines.append(
                f"- A simple before-and-after count would have suggested changes of about "
                f"{_f(avg, 0)}%; much of that is the natural fall after a peak of use, which the "
                "comparison group removes."
            )
        return "\n".join(lines) + "\n"

    def _board_value(self) -> list[str]:
        """The board's value-for-money bullet (none when no SROI was run)."""
        sv = self._sroi_values()
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        if ratio is None or pd.isna(ratio):
            return []
        verdict = "more than" if _num(ratio) > 1 else "less than"
        return [
            f"- **Value for money**: about £{_f(ratio)} of social value for each £1 spent "
            f"({verdict} it cost)."
        ]

    def board_caveats(self) -> str:
        """Short caveats for a board, drawn from the checks in the bundle."""
        if self._is_staggered():
            return self._staggered_board_caveats()
        items: list[str] = []
        bad = self._pretrend_failures()
        if bad:
            items.append(
                "**Caution**: before referral, use was already diverging for "
                + ", ".join(bad)
                + "; those estimates may be biased."
            )
        elif self.rb.has("pretrend_test"):
            items.append("Before referral the two groups followed parallel trends (a good sign).")
        imb = self._imbalanced()
        if imb:
            items.append(f"{len(imb)} characteristic(s) stayed imbalanced after matching.")
        elif self.rb.has("balance"):
            items.append("The matched groups were similar on every measured characteristic.")
        items.append(
            "This is an observational study: unmeasured differences that change at the time of "
            "referral cannot be ruled out."
        )
        items.append(SUPPRESSED)
        return "\n".join(f"- {i}" for i in items) + "\n"

    def protocol(self) -> str:
        proto = self.rb.protocol
        if not proto:
            return "\n*The protocol was not included in the bundle.*\n"
        rows = []
        for k in sorted(proto):
            v = proto[k]
            if isinstance(v, dict):
                text = "; ".join(f"{kk}: {_short(vv)}" for kk, vv in sorted(v.items()))
            else:
                text = _short(v)
            rows.append({"setting": str(k).replace("_", " "), "value": text})
        return markdown_table(pd.DataFrame(rows), caption="Protocol settings", label="tbl-protocol")

    def balance(self) -> str:
        if not self.rb.has("balance"):
            return not_run("balance")
        bad = self._imbalanced()
        if not bad:
            return (
                f"\nAfter matching every characteristic had an absolute SMD below {SMD_BAR}: the "
                "groups were well balanced on what was measured.\n"
            )
        return (
            WARN + f"After matching, {len(bad)} characteristic(s) still had an "
            f"absolute SMD above {SMD_BAR}: {', '.join(bad)}. Estimates may partly reflect "
            "these differences.\n:::\n"
        )

    def trends_caption(self) -> str:
        """Caption of the trends figure; says which outcomes are shown by quarter or
        half-year because their monthly counts were too small to release."""
        from spevidence.report.figures import pooled_outcomes

        text = "Mean NHS use per person per month, by month from referral"
        tr = self.rb.table("trends")
        pooled = pooled_outcomes(tr) if tr is not None else {}
        if pooled:
            names = "; ".join(f"{outcome_label(o)} by {p}" for o, p in pooled.items())
            text += (
                f" ({names}: by month most of their counts were too small to release under "
                "disclosure control, so events and person-months are summed over each period "
                "from referral and drawn at its middle month)"
            )
        return text

    def naive(self) -> str:
        if not self.rb.has("naive_before_after"):
            return ""
        return (
            "\nFor contrast, the simple before-and-after change in the referred group alone. "
            "It is **not** an estimate of effect: people are often referred at a peak of use, "
            "which falls afterwards anyway.\n"
            + self.rb.table_md(
                "naive_before_after",
                caption="Naive before-and-after comparison (referred group only)",
                columns=[
                    "outcome",
                    "n",
                    "mean_before",
                    "mean_after",
                    "change_pct",
                    "comparator_change_pct",
                ],
                digits={
                    "mean_before": 2,
                    "mean_after": 2,
                    "change_pct": 1,
                    "comparator_change_pct": 1,
                },
                rename={
                    "n": "referred",
                    "mean_before": "per person-year before",
                    "mean_after": "per person-year after",
                    "change_pct": "change %",
                    "comparator_change_pct": "change % in comparators",
                },
            )
        )

    def did(self) -> str:
        did = self.rb.table("did_estimates")
        if did is None or did.empty:
            return not_run("did_estimates")
        lines = [
            "\nThe estimates below are the difference between the change in the referred "
            "group and the change in matched comparators over the same months.\n"
        ]
        for _, row in _main_rows(did).iterrows():
            lines.append(f"- {effect_sentence(row, period=self._period())}")
        skipped = self.rb.table("did_not_estimated")
        for _, r in (skipped if skipped is not None else pd.DataFrame()).iterrows():
            lines.append(
                f"- **{outcome_label(r['outcome'])}** ({r['model']}): not estimated, {r['reason']}."
            )
        return "\n".join(lines) + "\n"

    def pretrend(self) -> str:
        if not self.rb.has("event_study") and not self.rb.has("pretrend_test"):
            return not_run("event_study")
        bad = self._pretrend_failures()
        if bad:
            return (
                WARN
                + "The pre-trend test **failed** for "
                + ", ".join(bad)
                + f" (p < {ALPHA}): before referral the groups were already moving apart, so the "
                "parallel-trends assumption behind difference-in-differences is doubtful.\n:::\n"
            )
        if self.rb.has("pretrend_test"):
            return (
                "\nBefore referral the referred group and comparators moved in parallel: the "
                f"joint pre-trend test did not reject (p ≥ {ALPHA}). This supports, but cannot "
                "prove, the parallel-trends assumption.\n"
            )
        return "\n*The joint pre-trend test was not run in this evaluation.*\n"

    def sensitivity(self) -> str:
        sens = self.rb.table("sensitivity")
        if sens is None or sens.empty:
            did = self.rb.table("did_estimates")
            if did is not None and "analysis" in did.columns:
                sens = did[
                    did["analysis"].notna() & (did["analysis"].astype(str).str.lower() != "main")
                ]
        if sens is None or sens.empty:
            return not_run("sensitivity")
        cols = [
            c
            for c in (
                "analysis",
                "outcome",
                "model",
                "estimate",
                "conf_low",
                "conf_high",
                "p_value",
            )
            if c in sens.columns
        ]
        return markdown_table(
            sens[cols] if cols else sens,
            caption="Sensitivity analyses: the main estimate under alternative choices",
            label="tbl-sensitivity",
            digits=3,
        )

    # -- staggered design (design: staggered) ---------------------------------------
    def _staggered_period(self) -> str:
        return str(self.rb.protocol.get("period", "quarter"))

    def _staggered_main(self) -> pd.DataFrame:
        """The simple (overall) aggregation per outcome and estimator."""
        st = self.rb.table("staggered")
        if st is None or "aggregation" not in st.columns:
            return pd.DataFrame(columns=["outcome", "estimator"])
        return st.loc[st["aggregation"] == "simple"].reset_index(drop=True)

    def _staggered_design(self) -> str:
        spec = self.rb.protocol.get("staggered") or {}
        period = self._staggered_period()
        cohort = {
            "referral": "the " + period + " of their first accepted referral",
            "service_start": "the " + period + " in which their PCN's link-worker service "
            "started (its first accepted referral)",
        }.get(str(spec.get("cohort", "referral")), "the " + period + " first treated")
        control = (
            "people not yet referred and people never referred"
            if spec.get("control", "notyet") == "notyet"
            else "people never referred"
        )
        names = {
            "callaway_santanna": "Callaway and Sant'Anna (2021)",
            "etwfe": "Wooldridge's extended two-way fixed effects "
            f"({spec.get('etwfe_family', 'poisson')})",
        }
        est = " and ".join(names.get(str(e), str(e)) for e in spec.get("estimators", []))
        return (
            f"\nEveryone registered was followed {period} by {period}. Each person's *cohort* "
            f"is {cohort}; each cohort is compared with {control} in the same {period}s "
            f"(staggered difference-in-differences, {est}). No one is matched: the whole "
            "population is the comparison, as in the national evaluation of Wilding et al. "
            "(2025). Effects are changes in events per person per "
            f"{period} among treated people.\n"
        )

    def _staggered_spec(self) -> dict[str, Any]:
        spec = self.rb.protocol.get("staggered") or {}
        return spec if isinstance(spec, dict) else {}

    def _staggered_words(self) -> dict[str, str]:
        """Who is treated, when treatment starts and whom they are compared with."""
        spec = self._staggered_spec()
        never = spec.get("control", "notyet") == "never"
        if spec.get("cohort") == "service_start":
            return {
                "treated": "people registered in PCNs that started a link-worker service",
                "start": "the service started",
                "comparison": "people in PCNs that never started it"
                if never
                else "people in PCNs whose service had not yet started, or never did",
            }
        return {
            "treated": "people referred to link workers",
            "start": "their first accepted referral",
            "comparison": "people never referred"
            if never
            else "people not yet referred or never referred",
        }

    def _staggered_headline(self) -> tuple[pd.DataFrame, str]:
        """The headline estimator's simple aggregation, one row per outcome (withheld
        estimates included), and its name: the estimate the SROI values
        (:func:`spevidence.did.headline.headline_estimator`)."""
        main = self._staggered_main()
        if main.empty or not {"estimate", "std_error"} <= set(main.columns):
            return main, ""
        name = headline_estimator(main)
        return main.loc[main["estimator"] == name].reset_index(drop=True), name

    def _staggered_disagreement(self) -> list[str]:
        """Outcomes whose simple effects by two estimators have disjoint 95% CIs."""
        main = self._staggered_main()
        out = []
        for o, rows in main.dropna(subset=["estimate"]).groupby("outcome", sort=False):
            lo = pd.to_numeric(rows["conf_low"], errors="coerce")
            hi = pd.to_numeric(rows["conf_high"], errors="coerce")
            if len(rows) > 1 and lo.max() > hi.min():
                out.append(outcome_label(o))
        return out

    def _staggered_excluded(self) -> str:
        """How many people of the linked panel the estimation left out, and why."""
        att = self.rb.table("attrition")
        if att is None or not {"step", "n", "n_dropped", "reason"} <= set(att.columns):
            return ""
        ex = att.loc[att["step"].astype(str).str.startswith("Excluded")]
        dropped = pd.to_numeric(ex["n_dropped"], errors="coerce")
        if not dropped.sum() > 0:
            return ""
        reasons = [PLAIN_REASONS.get(str(r), str(r)) for r in ex.loc[dropped > 0, "reason"]]
        first = pd.to_numeric(att["n"], errors="coerce").dropna()
        of = f" of the {_f(first.iloc[0], 0)}" if len(first) else ""
        return (
            f"{_f(dropped.sum(), 0)}{of} people in the linked panel were left out of the "
            f"analysis ({'; '.join(reasons)}): the estimates describe the people analysed."
        )

    def _observational(self) -> str:
        if self._is_staggered():
            w = self._staggered_words()
            return (
                "This is an observational study. Staggered difference-in-differences removes "
                "stable differences between people and changes shared by everyone in the same "
                f"{self._staggered_period()}, but not unmeasured changes that coincide with "
                f"{w['start']}."
            )
        return (
            "This is an observational study. Matching and difference-in-differences remove "
            "differences in measured characteristics and in stable unmeasured ones, but not "
            "unmeasured factors that change at the time of referral."
        )

    def _staggered_board(self) -> str:
        """Board findings of a staggered design: the headline simple effect of each
        outcome with its 95% CI, per person per period, from the released table."""
        w = self._staggered_words()
        period = self._staggered_period()
        n = self._final_count()
        who = f"{n} {w['treated']}" if n else w["treated"].capitalize()
        lines = [
            f"- {who} were compared, {period} by {period} before and after {w['start']}, "
            f"with {w['comparison']} (staggered difference-in-differences over the whole "
            "registered population; no matching)."
        ]
        rows, name = self._staggered_headline()
        if not name:
            lines.append(
                "- No overall effect could be estimated and released in this evaluation "
                "(the full report says why)."
            )
        else:
            lines.append(
                f"- The estimates are the {name} overall effect: the average change in events "
                f"per person per {period} among the treated, in the {period}s after "
                f"{w['start']}, relative to the comparison group."
            )
            threshold, _ = self._rules()
            for _, r in rows.iterrows():
                if pd.isna(r["estimate"]):
                    lines.append(
                        f"- **{outcome_label(r['outcome'])}**: withheld (it rests on "
                        f"{threshold} or fewer treated people)."
                    )
                else:
                    sentence = effect_sentence(r, period=period, versus="the comparison group")
                    lines.append(f"- {sentence}")
            shown = set(rows["outcome"])
            for o in self.rb.protocol.get("outcomes") or []:
                if o not in shown:
                    lines.append(
                        f"- **{outcome_label(o)}**: not estimated by {name} (see the full report)."
                    )
        lines += self._board_value()
        return "\n".join(lines) + "\n"

    def _staggered_board_caveats(self) -> str:
        """Board caveats of a staggered design (docs/methods.md section 3.3)."""
        w = self._staggered_words()
        referral = self._staggered_spec().get("cohort", "referral") == "referral"
        items: list[str] = []
        bad = self._pretrend_failures()
        if bad:
            text = (
                f"**Caution**: before {w['start']}, use was already diverging from the "
                f"comparison group for {', '.join(bad)}"
            )
            if referral:
                text += (
                    ". People are often referred at a peak of use that falls afterwards anyway "
                    "(regression to the mean), so those estimates may overstate any reduction; "
                    "a matched comparison at the date of referral is the safer design."
                )
            else:
                text += "; those estimates may be biased."
            items.append(text)
        elif self.rb.has("staggered_pretrend") and self._pretrend_untested():
            items.append(
                f"The test of parallel trends before {w['start']} could not be computed; "
                "read the pre-treatment estimates of the event study."
            )
        elif self.rb.has("staggered_pretrend"):
            items.append(
                f"Before {w['start']} the treated and the comparison group followed parallel "
                "trends (a good sign, though it cannot prove the design's assumption)."
            )
        else:
            items.append(
                f"Trends before {w['start']} were not tested (the pre-trend test comes with "
                "Callaway-Sant'Anna, which was not run)."
            )
        disagree = self._staggered_disagreement()
        if disagree:
            items.append(
                "The two estimators disagree for " + ", ".join(disagree) + " (their 95% "
                "confidence intervals do not overlap): read those estimates with care."
            )
        if left := self._staggered_excluded():
            items.append(left)
        items.append(self._observational())
        threshold, _ = self._rules()
        items.append(
            SUPPRESSED[:-1] + f"; estimates resting on {threshold} or fewer treated people "
            "are withheld."
        )
        return "\n".join(f"- {i}" for i in items) + "\n"

    def _staggered_summary(self) -> str:
        lines = [self.synthetic_banner(), self._staggered_design()]
        n = self._final_count()
        if n is not None:
            lines.append(
                f"The analysis included {n} treated people (rounded for disclosure control).\n"
            )
        main = self._staggered_main()
        if len(main):
            lines.append(
                "\nOverall effect after first treatment (per person per "
                f"{self._staggered_period()}):\n"
            )
            for _, r in main.iterrows():
                lines.append(
                    f"- **{outcome_label(r['outcome'])}** ({r['estimator']}): "
                    + _staggered_effect(r)
                )
        if sroi := self._sroi_sentence():
            lines.append(sroi[:-1] + " (the SROI section says which estimate it values).")
        bad = self._pretrend_failures()
        if bad:
            lines.append(
                WARN + "**Read with care:** before referral, the treated people's use was already "
                f"moving away from the comparators' ({', '.join(bad)}). People are often "
                "referred at a peak of use that falls afterwards anyway (regression to the mean), "
                "so these estimates may mix that fall with any effect of the service.\n:::"
            )
        if loss := self._row_loss():
            lines.append(WARN + f"**Read with care:** {loss}.\n:::")
        return "\n".join(lines) + "\n"

    def staggered(self) -> str:
        st = self.rb.table("staggered")
        if st is not None and "aggregation" in st.columns:
            return self._staggered_section(st)
        if not self.rb.has("staggered"):
            return not_run("staggered")
        return (
            "\nReferrals happened at different times; the staggered-adoption estimator "
            "(Callaway and Sant'Anna 2021) compares each referral cohort only with people not yet "
            "or never referred, avoiding the bias of two-way fixed effects with staggered timing.\n"
            + self.rb.table_md(
                "staggered", caption="Staggered difference-in-differences estimates", digits=3
            )
        )

    def _staggered_section(self, st: pd.DataFrame) -> str:
        period = self._staggered_period()
        parts = [self._staggered_design()]
        bad = self._pretrend_failures()
        if bad:
            parts.append(
                WARN + "The joint pre-trend test **failed** for " + ", ".join(bad) + f" (p < "
                f"{ALPHA}): before first treatment the treated people's use was already "
                "diverging from the comparators'. A rise just before referral followed by a "
                "fall is the signature of referral at a peak of use (regression to the mean); "
                "the post-referral estimates then overstate any reduction.\n:::\n"
            )
        elif (pt := self.rb.table("staggered_pretrend")) is not None and len(pt):
            p = pd.to_numeric(pt["p_value"], errors="coerce")
            what = (
                f"joint Wald test of the {pt['test'].iloc[0]}"
                if "test" in pt.columns and isinstance(pt["test"].iloc[0], str)
                else "joint pre-trend test"
            )
            if p.isna().all():
                why = pt["note"].dropna().astype(str) if "note" in pt.columns else pd.Series([])
                parts.append(
                    f"\nThe {what} could not be computed"
                    + (f" ({why.iloc[0]})" if len(why) and why.iloc[0] else "")
                    + ": read the pre-treatment estimates of the event study instead.\n"
                )
            else:
                parts.append(
                    "\nBefore first treatment the treated and comparison groups moved in "
                    f"parallel ({what}: p ≥ {ALPHA}).\n"
                )
        parts.append(
            self.rb.figure_md(
                "staggered_event_study",
                caption=f"Change in NHS use per person per {period}, by {period}s since first "
                "treatment (95% confidence intervals)",
                alt="Event-study chart of the staggered difference-in-differences",
            )
        )
        cols = [
            "outcome",
            "estimator",
            "estimate",
            "std_error",
            "conf_low",
            "conf_high",
            "p_value",
            "n",
            "scale",
        ]
        main = self._staggered_main()
        parts.append(
            markdown_table(
                main[[c for c in cols if c in main.columns]],
                caption="Overall effect after first treatment (simple aggregation; n = treated "
                "people)",
                label="tbl-staggered-simple",
                digits={"estimate": 3, "std_error": 3, "conf_low": 3, "conf_high": 3, "p_value": 3},
            )
        )
        dyn = st.loc[st["aggregation"] == "dynamic"].copy()
        if len(dyn):
            dyn["cell"] = [
                "0 (reference)"
                if r["estimate"] == 0 and pd.isna(r["std_error"])
                else "–"
                if pd.isna(r["estimate"])
                else f"{_f(r['estimate'], 3)} ({_f(r['conf_low'], 3)} to {_f(r['conf_high'], 3)})"
                for _, r in dyn.iterrows()
            ]
            dyn["column"] = [
                f"{outcome_label(o)}, {e}"
                for o, e in zip(dyn["outcome"], dyn["estimator"], strict=True)
            ]
            wide = dyn.pivot_table(
                index="event", columns="column", values="cell", aggfunc="first", sort=False
            ).reset_index()
            wide["event"] = pd.to_numeric(wide["event"]).astype(int)
            wide = wide.rename(columns={"event": f"{period.capitalize()}s since treatment"})
            parts.append(
                markdown_table(
                    wide.fillna("–"),
                    caption=f"Dynamic effects by {period}s since first treatment: estimate "
                    "(95% CI)",
                    label="tbl-staggered-dynamic",
                )
            )
        parts.append(
            self.rb.table_md(
                "staggered_pretrend",
                caption="Joint Wald test that the pre-treatment effects are zero "
                "(Callaway-Sant'Anna event-study leads)",
                digits={"statistic": 1, "p_value": 3},
            )
        )
        parts.append(
            self.rb.figure_md(
                "staggered_trends",
                caption=f"Mean NHS use per person per {period}: people ever referred and people "
                "never referred",
                alt="Line chart of mean NHS use over the study window",
            )
        )
        if self.rb.has("staggered_cohorts"):
            parts.append(
                self.rb.table_md(
                    "staggered_cohorts",
                    caption="Treated people by cohort (period first treated; rounded)",
                    columns=["cohort", "n"],
                )
            )
        notes = self.rb.table("staggered_notes")
        if notes is not None and len(notes):
            parts.append(
                "\n*Not estimated:* "
                + "; ".join(
                    f"{r['estimator']} for {outcome_label(r['outcome'])} ({r['note']})"
                    for _, r in notes.iterrows()
                )
                + "\n"
            )
        fit_notes = self.rb.table("staggered_fit_notes")
        if fit_notes is not None and len(fit_notes):
            parts.append(
                "\n*Cells with no events (Poisson model; the estimate is at its limit there):* "
                + "; ".join(
                    f"{r['estimator']} for {outcome_label(r['outcome'])}, {r['note']}"
                    for _, r in fit_notes.iterrows()
                )
                + ".\n"
            )
        return "\n".join(parts)

    def sroi(self) -> str:
        sv = self._sroi_values()
        if not sv:
            return not_run("sroi_summary")
        ratio = sv.get("sroi_ratio", sv.get("ratio"))
        text = ""
        if ratio is not None and not pd.isna(ratio):
            verdict = "more" if _num(ratio) > 1 else "less"
            text = (
                f"\nThe estimated social return is **£{_f(ratio)} per £1** invested: the "
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
        if self._is_staggered() and (left := self._staggered_excluded()):
            items.append(left)
        did = self.rb.table("did_estimates")
        main = _main_rows(did) if did is not None and not did.empty else None
        if self._is_staggered():
            main = self._staggered_headline()[0].dropna(subset=["estimate"])
        if main is not None and len(main):
            wide = [
                outcome_label(r.get("outcome", ""))
                for _, r in main.iterrows()
                if _ci_vs_null(r)[0] <= 0 <= _ci_vs_null(r)[1]
            ]
            if wide:
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
            f"- spevidence version: {m.get('spevidence_version', '–')}",
            f"- Protocol hash (SHA-256): `{m.get('protocol_sha256', '–')}`",
            f"- Random seed: {m.get('seed', '–')}",
            f"- Data engine: {m.get('engine', '–')}",
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
        return f"£{_f(value)}"
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
