"""Tests of the synthetic ICB generator (issue 4)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from spevidence.data.schema import TABLES, UNPLANNED_METHODS_DEFAULT
from spevidence.errors import SpevidenceError
from spevidence.synthetic import ScenarioError, generate, list_scenarios, load_scenario

KIND_TO_ARROW = {
    "id": "string",
    "str": "string",
    "int": "int64",
    "date": "date32[day]",
    "float": "double",
    "bool": "bool",
}
EXTRACTS = ["population", "referrals", "gp_appointments", "ae_attendances", "admissions"]


def nhs_ok(value: str) -> bool:
    """Modulus-11 check written out independently of the package (DOMAIN.md)."""
    if len(value) != 10 or not value.isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(value[9])


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(res, name: str) -> pd.DataFrame:
    path = res.files[name]
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate("demo", persons=5000, seed=1, out=tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def null(tmp_path_factory):
    return generate("null-effect", persons=10000, seed=3, out=tmp_path_factory.mktemp("null"))


def exposure_years(pop: pd.DataFrame, start: str, end: str) -> pd.Series:
    w0, w1 = pd.Timestamp(start), pd.Timestamp(end)
    a = pd.to_datetime(pop["registration_start"]).clip(lower=w0)
    # registration ends on the day of death, so registration_end covers deaths too
    b = pd.to_datetime(pop["registration_end"]).fillna(w1).clip(upper=w1)
    return ((b - a).dt.days + 1).clip(lower=0) / 365.25


# ------------------------------------------------------------------ API and determinism


def test_result_files_and_rows(demo):
    assert set(demo.files) == {*EXTRACTS, "wellbeing", "truth"}
    for name, path in demo.files.items():
        assert path.parent == demo.out and path.is_file()
        if name != "truth":
            assert pq.read_metadata(path).num_rows == demo.rows[name]
    assert demo.rows["population"] == 5000
    on_disk = json.loads(demo.files["truth"].read_text())
    assert on_disk == demo.truth
    assert demo.tidy()["rows"].sum() == sum(demo.rows.values())
    assert "demo" in demo.summary()


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_arguments_give_identical_files(tmp_path, fmt):
    a = generate("demo", persons=1500, seed=7, out=tmp_path / "a", format=fmt)
    generate("null-effect", persons=300, seed=1, out=tmp_path / "b", format="csv")
    b = generate("demo", persons=1500, seed=7, out=tmp_path / "b", format=fmt)  # over it
    c = generate("demo", persons=1500, seed=8, out=tmp_path / "c", format=fmt)
    assert {k: sha(p) for k, p in a.files.items()} == {k: sha(p) for k, p in b.files.items()}
    assert sha(a.files["gp_appointments"]) != sha(c.files["gp_appointments"])
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        p.name for p in (tmp_path / "a").iterdir()
    )


def test_small_chunks_keep_ids_unique(tmp_path, monkeypatch):
    import spevidence.synthetic._generate as gen

    monkeypatch.setattr(gen, "CHUNK_PERSONS", 700)
    res = generate("demo", persons=2000, seed=2, out=tmp_path)
    pop = read(res, "population")
    assert len(pop) == 2000 and pop["person_id"].is_unique
    gp = read(res, "gp_appointments")
    assert set(gp["person_id"]) <= set(pop["person_id"])


# ------------------------------------------------------------------ schema conformance


@pytest.mark.parametrize("name", [*EXTRACTS, "wellbeing"])
def test_parquet_schema_matches_contract(demo, name):
    table = TABLES[name]
    schema = pq.read_schema(demo.files[name])
    assert list(schema.names) == list(table.names)
    for col in table.columns:
        assert str(schema.field(col.name).type) == KIND_TO_ARROW[col.kind], col.name
    df = pd.read_parquet(demo.files[name])
    assert len(df) > 0
    for col in table.columns:
        if col.required and not col.nullable:
            assert df[col.name].notna().all(), col.name
        if col.allowed is not None:
            values = set(df[col.name].dropna().astype(str))
            assert values <= set(col.allowed), (col.name, values - set(col.allowed))


def test_csv_has_contract_columns_and_iso_dates(tmp_path):
    res = generate("demo", persons=800, seed=4, out=tmp_path, format="csv")
    for name in EXTRACTS:
        df = read(res, name)
        assert list(df.columns) == list(TABLES[name].names)
        dcol = TABLES[name].date_column
        if dcol:
            assert df[dcol].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


# ------------------------------------------------------------------ identifiers


def test_nhs_numbers_valid_unique_test_range(demo):
    pop = read(demo, "population")
    ids = pop["person_id"].tolist()
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("999") and nhs_ok(i) for i in ids)
    known = set(ids)
    for name in ["referrals", "gp_appointments", "ae_attendances", "admissions", "wellbeing"]:
        assert set(read(demo, name)["person_id"]) <= known, name


def test_pseudonym_tokens(tmp_path):
    res = generate("kent-ae", persons=1200, seed=1, out=tmp_path)
    ids = read(res, "population")["person_id"]
    assert ids.nunique() == 1200  # kent-ae has re-registrations: one row per spell
    assert ids.str.fullmatch(r"[0-9a-f]{32}").all()


def test_nhs_range_too_small_for_national_scale(tmp_path):
    with pytest.raises(ScenarioError, match="pseudonym"):
        generate("demo", persons=2_000_000, seed=1, out=tmp_path)


# ------------------------------------------------------------------ realism


def test_marginal_rates_within_tolerance(demo):
    pop = read(demo, "population")
    w = demo.truth["window"]
    years = exposure_years(pop, w["start"], w["end"]).sum()
    gp = read(demo, "gp_appointments")
    gp_rate = ((gp["status"] == "attended") & (gp["staff_role"] == "gp")).sum() / years
    ae_rate = len(read(demo, "ae_attendances")) / years
    adm = read(demo, "admissions")
    adm_rate = adm["admission_method"].isin(UNPLANNED_METHODS_DEFAULT).sum() / years
    assert 4.8 <= gp_rate <= 6.2, gp_rate  # issue: GP about 5-6 a year
    assert 0.32 <= ae_rate <= 0.48, ae_rate  # about 0.4
    assert 0.07 <= adm_rate <= 0.13, adm_rate  # about 0.1
    # the truth file's own exposure agrees with ours
    assert demo.truth["population"]["person_years"] == pytest.approx(years, rel=0.01)


def test_age_gradient_and_correlated_frailty(demo):
    pop = read(demo, "population")
    w = demo.truth["window"]
    pop["years"] = exposure_years(pop, w["start"], w["end"])
    pop["age"] = 2021 - pop["year_of_birth"]
    gp = read(demo, "gp_appointments")
    gp = gp[(gp["status"] == "attended") & (gp["staff_role"] == "gp")]
    counts = pd.DataFrame(
        {
            "gp": gp.groupby("person_id").size(),
            "ae": read(demo, "ae_attendances").groupby("person_id").size(),
        }
    )
    pop = pop.join(counts, on="person_id").fillna({"gp": 0, "ae": 0})
    old = pop[pop["age"] >= 70]
    young = pop[(pop["age"] >= 20) & (pop["age"] < 40)]
    assert old["gp"].sum() / old["years"].sum() > 1.5 * young["gp"].sum() / young["years"].sum()
    full = pop[pop["years"] > 2.9]
    rho = full["gp"].corr(full["ae"], method="spearman")
    assert rho > 0.1, rho  # the shared frailty correlates the outcomes
    # overdispersion: variance of GP counts far above the mean (gamma-Poisson)
    assert full["gp"].var() > 2 * full["gp"].mean()


def test_no_event_outside_registration_or_after_death(demo):
    pop = read(demo, "population").set_index("person_id")
    w0, w1 = (pd.Timestamp(demo.truth["window"][k]) for k in ("start", "end"))
    start = pd.to_datetime(pop["registration_start"])
    end = pd.to_datetime(pop["registration_end"])
    death = pd.to_datetime(pop["death_date"])
    assert (end[death.notna()] == death[death.notna()]).all()
    for name in ["referrals", "gp_appointments", "ae_attendances", "admissions", "wellbeing"]:
        df = read(demo, name)
        d = pd.to_datetime(df[TABLES[name].date_column])
        pid = df["person_id"]
        assert (d >= w0).all() and (d <= w1).all(), name
        assert (d >= start.reindex(pid).to_numpy()).all(), name
        e = end.reindex(pid).to_numpy()
        assert ((d <= e) | pd.isna(e)).all(), name
    adm = read(demo, "admissions")
    a = pd.to_datetime(adm["admission_date"])
    dis = pd.to_datetime(adm["discharge_date"])
    assert ((dis >= a) | dis.isna()).all()
    dd = death.reindex(adm["person_id"]).to_numpy()
    assert ((dis <= dd) | dis.isna() | pd.isna(dd)).all()
    assert demo.truth["population"]["deaths"] == death.notna().sum() > 0


def test_referrals_and_outcomes(demo):
    ref = read(demo, "referrals")
    assert ref["person_id"].is_unique
    share = ref["outcome"].value_counts(normalize=True)
    assert 0.6 < share["accepted"] < 0.8
    c = demo.truth["cohort"]
    assert c["referred"] == len(ref)
    assert c["accepted"] == (ref["outcome"] == "accepted").sum()
    # referral only from 18 years
    pop = read(demo, "population").set_index("person_id")
    age = (
        pd.to_datetime(ref["referral_date"]).dt.year
        - pop["year_of_birth"].reindex(ref["person_id"]).to_numpy()
    )
    assert (age >= 17).all()


# ------------------------------------------------------------------ truth and RTM


def naive_before_after(res) -> tuple[int, float]:
    """Referred people with a full year before and after referral: after / before - 1."""
    pop = read(res, "population")
    ref = read(res, "referrals").merge(pop, on="person_id")
    gp = read(res, "gp_appointments")
    gp = gp[(gp["status"] == "attended") & (gp["staff_role"] == "gp")]
    w0, w1 = (pd.Timestamp(res.truth["window"][k]) for k in ("start", "end"))
    rd = pd.to_datetime(ref["referral_date"])
    lo, hi = rd - pd.DateOffset(years=1), rd + pd.DateOffset(years=1)
    end = pd.to_datetime(ref["registration_end"]).fillna(pd.Timestamp("2200-01-01"))
    ok = (lo >= w0) & (lo >= pd.to_datetime(ref["registration_start"])) & (hi <= w1) & (hi <= end)
    sub = ref.loc[ok, ["person_id"]].assign(rd=rd[ok])
    g = gp.merge(sub, on="person_id")
    d = pd.to_datetime(g["appointment_date"])
    before = ((d < g["rd"]) & (d >= g["rd"] - pd.DateOffset(years=1))).sum()
    after = ((d >= g["rd"]) & (d < g["rd"] + pd.DateOffset(years=1))).sum()
    return len(sub), after / before - 1


def test_null_effect_regression_to_the_mean(null):
    t = null.truth
    for o in ("gp", "ae", "admissions"):
        assert t["effects"]["rate_ratio"][o] == 1.0
        assert t["att"][o]["rate_ratio"] == pytest.approx(1.0)
        assert t["att"][o]["att_per_person_month"] == pytest.approx(0.0, abs=1e-12)
    n, change = naive_before_after(null)
    assert n >= 150
    assert change <= -0.15, change  # naive before/after "finds" a fall of at least 15 %


def test_demo_truth_and_naive_overstatement(demo):
    t = demo.truth
    assert t["effects"]["rate_ratio"] == {"gp": 0.85, "ae": 0.90, "admissions": 0.92}
    assert t["effects"]["ramp_up_months"] == 3
    for o, rr in t["effects"]["rate_ratio"].items():
        realised = t["att"][o]["rate_ratio"]
        assert rr < realised < 1.0  # ramp-up dilutes the nominal ratio, never beyond it
        assert t["att"][o]["att_per_person_month"] < 0
        assert t["att"][o]["expected_treated_per_person_month"] == pytest.approx(
            realised * t["att"][o]["expected_untreated_per_person_month"]
        )
    months = t["att_by_event_month"]
    assert months[0]["rate_ratio_gp"] > months[2]["rate_ratio_gp"]
    assert months[6]["rate_ratio_gp"] == pytest.approx(0.85, abs=1e-9)
    _, change = naive_before_after(demo)
    assert change < -(1 - 0.85) - 0.05, change  # naive overstates the true -15 %
    assert t["marginal_rates_per_person_year"]["gp"]["realised"] == pytest.approx(
        t["marginal_rates_per_person_year"]["gp"]["expected"], rel=0.05
    )


def test_wellbeing_change(demo):
    wb = read(demo, "wellbeing").sort_values(["person_id", "measured_date"])
    assert set(wb["instrument"]) == {"swemwbs"}
    assert wb["score"].between(7, 35).all()
    pairs = wb.groupby("person_id")["score"].agg(["first", "last", "size"])
    pairs = pairs[pairs["size"] == 2]
    change = (pairs["last"] - pairs["first"]).mean()
    assert change == pytest.approx(1.0 + 2.0, abs=0.8)  # natural change + effect


# ------------------------------------------------------------------ defects


DEFECTS = {
    "invalid_nhs_number": 0.04,
    "duplicate_events": 0.03,
    "events_after_death": 0.5,
    "events_outside_registration": 0.3,
    "referrals_not_in_population": 0.05,
    "negative_length_of_stay": 0.05,
}
DATE_DEFECTS = {
    "mixed_date_formats": 0.04,
    "unparseable_dates": 0.02,
    "missing_column": {"table": "gp_appointments", "column": "mode"},
}


def _with_defects(defects: dict):
    base = load_scenario("demo")
    return base.model_copy(update={"defects": base.defects.model_validate(defects)})


@pytest.fixture(scope="module")
def defect_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("defects")
    clean = generate("demo", persons=4000, seed=5, out=d / "clean")
    bad = generate(_with_defects(DEFECTS), persons=4000, seed=5, out=d / "bad")
    return clean, bad


@pytest.fixture(scope="module")
def date_defects(tmp_path_factory):
    d = tmp_path_factory.mktemp("dates")
    return generate(_with_defects(DATE_DEFECTS), persons=2000, seed=6, out=d, format="csv")


def within(count: int, eligible: int, rate: float) -> bool:
    sd = np.sqrt(eligible * rate * (1 - rate))
    return abs(count - eligible * rate) <= 4 * sd + 1


def test_defects_recorded_and_at_rate(defect_pair):
    clean, bad = defect_pair
    inj = bad.truth["defects"]
    assert clean.truth["defects"]["invalid_nhs_number"] == {"rate": 0.0}
    # clean data are the same with and without defects (separate random streams)
    assert clean.truth["cohort"] == bad.truth["cohort"]

    pop = read(bad, "population")
    invalid = (~pop["person_id"].map(nhs_ok)).sum()
    assert invalid == inj["invalid_nhs_number"]["persons"]
    assert within(invalid, len(pop), DEFECTS["invalid_nhs_number"])

    m = inj["duplicate_events"]
    for name in ("gp_appointments", "ae_attendances", "admissions"):
        c, b = read(clean, name), read(bad, name)
        injected = m[f"{name}_rows"]
        if name == "gp_appointments":
            extra = inj["events_after_death"]["rows"] + inj["events_outside_registration"]["rows"]
            assert len(b) == len(c) + extra + injected
        else:
            assert len(b) == len(c) + injected
        if name != "admissions":  # negative lengths of stay alter admission rows
            assert b.duplicated().sum() == c.duplicated().sum() + injected, name
    assert within(m["gp_appointments_rows"], m["gp_appointments_eligible"], 0.03)
    assert within(m["ae_attendances_rows"], m["ae_attendances_eligible"], 0.03)

    ref_c, ref_b = read(clean, "referrals"), read(bad, "referrals")
    ghosts = (~ref_b["person_id"].isin(pop["person_id"])).sum()
    assert ghosts == inj["referrals_not_in_population"]["rows"] == len(ref_b) - len(ref_c)
    assert within(ghosts, len(ref_c), DEFECTS["referrals_not_in_population"])

    adm = read(bad, "admissions")
    neg = (pd.to_datetime(adm["discharge_date"]) < pd.to_datetime(adm["admission_date"])).sum()
    assert neg == inj["negative_length_of_stay"]["rows"] > 0
    e = inj["negative_length_of_stay"]
    assert within(e["rows"], e["eligible"], DEFECTS["negative_length_of_stay"])


def test_date_defects_in_csv(date_defects):
    bad = date_defects
    inj = bad.truth["defects"]
    assert "mode" not in read(bad, "gp_appointments").columns
    total_mixed = total_bad = total = 0
    for name in ["referrals", "gp_appointments", "ae_attendances", "admissions"]:
        col = read(bad, name)[TABLES[name].date_column]
        iso = col.str.fullmatch(r"\d{4}-\d{2}-\d{2}")
        dmy = (
            col.str.fullmatch(r"\d{2}/\d{2}/\d{4}")
            & pd.to_datetime(col, format="%d/%m/%Y", errors="coerce").notna()
        )
        unparseable = ~iso & ~dmy | (iso & pd.to_datetime(col, errors="coerce").isna())
        assert dmy.sum() == inj["mixed_date_formats"][f"{name}_rows"]
        assert unparseable.sum() == inj["unparseable_dates"][f"{name}_rows"]
        total_mixed += dmy.sum()
        total_bad += unparseable.sum()
        total += len(col)
    assert within(total_mixed, total, DATE_DEFECTS["mixed_date_formats"])
    assert within(total_bad, total, DATE_DEFECTS["unparseable_dates"])


def test_events_after_death_and_outside_registration_injected(defect_pair):
    clean, bad = defect_pair
    inj = bad.truth["defects"]
    pop = read(clean, "population").set_index("person_id")
    gp = read(bad, "gp_appointments")
    bad_pop = read(bad, "population")
    # map the possibly-corrupted ids back by position (population order is fixed)
    back = dict(zip(bad_pop["person_id"], pop.index, strict=True))
    pid = gp["person_id"].map(back)
    d = pd.to_datetime(gp["appointment_date"])
    death = pd.to_datetime(pop["death_date"]).reindex(pid).to_numpy()
    after_death = pd.notna(death) & (d > death)
    assert pid[after_death].nunique() == after_death.sum()
    assert after_death.sum() == inj["events_after_death"]["rows"]
    start = pd.to_datetime(pop["registration_start"]).reindex(pid).to_numpy()
    end = pd.to_datetime(pop["registration_end"]).reindex(pid).to_numpy()
    outside = (d < start) | (pd.notna(end) & (d > end) & pd.isna(death))
    assert outside.sum() == inj["events_outside_registration"]["rows"]
    e = inj["events_after_death"]
    assert within(e["persons"], e["eligible"], DEFECTS["events_after_death"])
    e = inj["events_outside_registration"]
    assert within(e["persons"], e["eligible"], DEFECTS["events_outside_registration"])


# ------------------------------------------------------------------ scenarios and errors


def test_shipped_scenarios_load_and_run(tmp_path):
    names = list_scenarios()
    assert {"demo", "null-effect", "frequent-attenders", "kent-ae", "staggered-national"} <= set(
        names
    )
    for name in names:
        sc = load_scenario(name)
        assert sc.name == name
    res = generate("staggered-national", persons=3000, seed=1, out=tmp_path / "s")
    starts = set(res.truth["service_start_by_pcn"].values())
    assert res.truth["population"]["pcns"] == 1 or len(starts) > 1
    fa = generate("frequent-attenders", persons=3000, seed=1, out=tmp_path / "f")
    assert fa.truth["effects"]["rate_ratio"] == {"gp": 0.80, "ae": 0.97, "admissions": 0.95}


def test_frequent_attenders_are_referred_after_15_visits(tmp_path):
    res = generate("frequent-attenders", persons=6000, seed=2, out=tmp_path)
    ref = read(res, "referrals")
    gp = read(res, "gp_appointments")
    gp = gp[(gp["status"] == "attended") & (gp["staff_role"] == "gp")].merge(ref, on="person_id")
    d = pd.to_datetime(gp["appointment_date"])
    rd = pd.to_datetime(gp["referral_date"])
    # the rule counts whole calendar months before the referral month; be generous by a month
    window = (d < rd) & (d >= rd - pd.DateOffset(months=13))
    prior = window.groupby(gp["person_id"]).sum().reindex(ref["person_id"], fill_value=0)
    # only referrals with 13 months of visible history (the rule also sees pre-window use)
    late = pd.to_datetime(ref["referral_date"]) >= pd.Timestamp("2022-05-01")
    assert late.sum() > 20
    assert (prior[late.to_numpy()] > 15).all()


def write_yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


BASE = "name: t\nwindow: {start: 2021-04-01, end: 2022-03-31}\n"


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        ("colour: blue\n", r"colour"),
        ("referral: {outcomes: {accepted: 0.5, declined: 0.1, did_not_engage: 0.1}}\n", r"sum"),
        ("effects: {rate_ratio: {gp: 0, ae: 1, admissions: 1}}\n", r"rate_ratio"),
        ("identifiers: pseudonym\ndefects: {invalid_nhs_number: 0.1}\n", r"invalid_nhs_number"),
        ("rates: {gp: 5}\n", r"rates\.ae"),
        ("defects: {duplicate_events: 1.5}\n", r"duplicate_events"),
    ],
)
def test_scenario_validation_errors(tmp_path, extra, pattern):
    with pytest.raises(ScenarioError, match=pattern) as info:
        load_scenario(write_yaml(tmp_path, BASE + extra))
    assert isinstance(info.value, SpevidenceError)
    assert "s.yaml" in str(info.value)


def test_scenario_lookup_errors(tmp_path):
    with pytest.raises(ScenarioError, match=r"Known scenarios: .*demo"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write_yaml(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ScenarioError, match="window"):
        load_scenario(
            write_yaml(tmp_path, "name: t\nwindow: {start: 2022-01-01, end: 2021-01-01}\n")
        )


def test_generate_argument_errors(tmp_path):
    p = write_yaml(tmp_path, BASE + "defects: {unparseable_dates: 0.1}\n")
    with pytest.raises(ScenarioError, match="csv"):
        generate(p, persons=100, seed=1, out=tmp_path / "o")
    p = write_yaml(tmp_path, BASE + "defects: {missing_column: {table: admissions, column: x}}\n")
    with pytest.raises(ScenarioError, match="no column 'x'"):
        generate(p, persons=100, seed=1, out=tmp_path / "o")
    with pytest.raises(ScenarioError, match="YYYY-MM-DD"):
        generate("demo", persons=100, seed=1, out=tmp_path / "o", start="01/04/2021")
    with pytest.raises(ScenarioError, match="after its start"):
        generate(
            "demo", persons=100, seed=1, out=tmp_path / "o", start="2022-01-01", end="2021-01-01"
        )


def test_window_override(tmp_path):
    res = generate("demo", persons=600, seed=1, out=tmp_path, start="2022-01-01", end="2022-12-31")
    gp = read(res, "gp_appointments")
    d = pd.to_datetime(gp["appointment_date"])
    assert d.min() >= pd.Timestamp("2022-01-01") and d.max() <= pd.Timestamp("2022-12-31")
    assert res.truth["window"] == {"start": "2022-01-01", "end": "2022-12-31"}


def test_cli_synth(tmp_path):
    from typer.testing import CliRunner

    from spevidence.cli import app

    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "synth",
            "--scenario",
            "demo",
            "--persons",
            "300",
            "--seed",
            "2",
            "--out",
            str(tmp_path / "o"),
            "--format",
            "csv",
            "--no-progress",
        ],
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "o" / "gp_appointments.csv").is_file()
    assert json.loads((tmp_path / "o" / "truth.json").read_text())["persons"] == 300
    r = runner.invoke(app, ["synth", "--list"])
    assert r.exit_code == 0 and "null-effect" in r.output
    r = runner.invoke(app, ["synth", "--scenario", "nope", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0
    assert isinstance(r.exception, SpevidenceError)
    assert re.search(r"No scenario named", str(r.exception))


def test_plot_around_referral(null):
    from spevidence.synthetic import around_referral

    data = around_referral(null.out)
    pivot = data.pivot(index="month", columns="group", values="gp_per_person_month")
    # referred people peak just before referral and fall back afterwards
    peak = pivot.loc[-3:-1, "referred"].mean()
    later = pivot.loc[3:11, "referred"].mean()
    assert peak > 1.5 * later
    # comparators stay flat
    ctrl = pivot["not referred"]
    assert ctrl.loc[-3:-1].mean() == pytest.approx(ctrl.loc[3:11].mean(), rel=0.25)
    fig = null.plot()
    assert fig.axes[0].get_title()


# ------------------------------------------------------------------ truth is recoverable


def did_accepted_vs_not(res) -> float:
    """Ratio of (post / pre GP rate) in accepted vs declined/did-not-engage referrals.

    Acceptance is random among the referred, so the non-accepted share the accepted
    people's regression to the mean and this difference-in-differences (of log rates)
    targets the realised rate ratio in truth.json.
    """
    pop = read(res, "population")
    ref = read(res, "referrals").merge(pop, on="person_id")
    w0, w1 = (pd.Timestamp(res.truth["window"][k]) for k in ("start", "end"))
    rd = pd.to_datetime(ref["referral_date"])
    start = pd.to_datetime(ref["registration_start"]).clip(lower=w0)
    end = pd.to_datetime(ref["registration_end"]).fillna(w1).clip(upper=w1)
    pre0 = np.maximum(start, rd - pd.DateOffset(years=1))
    ref = ref.assign(
        rd=rd, pre0=pre0, pre_days=(rd - pre0).dt.days, post_days=(end - rd).dt.days + 1
    )
    gp = read(res, "gp_appointments")
    gp = gp[(gp["status"] == "attended") & (gp["staff_role"] == "gp")]
    g = gp.merge(ref[["person_id", "rd", "pre0"]], on="person_id")
    d = pd.to_datetime(g["appointment_date"])
    g = g.assign(pre=(d < g["rd"]) & (d >= g["pre0"]), post=d >= g["rd"])
    counts = g.groupby("person_id")[["pre", "post"]].sum()
    ref = ref.join(counts, on="person_id").fillna({"pre": 0, "post": 0})
    ref = ref[ref["pre_days"] >= 180]
    ratio = {}
    for accepted, sub in ref.groupby(ref["outcome"] == "accepted"):
        post = sub["post"].sum() / sub["post_days"].sum()
        pre = sub["pre"].sum() / sub["pre_days"].sum()
        ratio[bool(accepted)] = post / pre
    return ratio[True] / ratio[False]


def test_did_recovers_true_gp_rate_ratio(tmp_path):
    res = generate("demo", persons=20000, seed=1, out=tmp_path)
    truth = res.truth["att"]["gp"]["rate_ratio"]
    est = did_accepted_vs_not(res)
    assert est == pytest.approx(truth, abs=0.06), (est, truth)
    _, naive = naive_before_after(res)
    assert 1 + naive < est  # the naive before/after is far below the DiD


def test_did_finds_nothing_under_null(null):
    assert did_accepted_vs_not(null) == pytest.approx(1.0, abs=0.1)


def test_staggered_national_shocks_and_cohorts(tmp_path):
    res = generate("staggered-national", persons=30000, seed=3, out=tmp_path)
    t = res.truth
    starts = sorted(set(t["service_start_by_pcn"].values()))
    assert len(starts) >= 2 and starts[0] >= "2019-04-01" and starts[-1] <= "2024-01-01"
    ref = read(res, "referrals").merge(read(res, "population"), on="person_id")
    inside = (ref["referral_date"] >= ref["registration_start"]) & (
        ref["registration_end"].isna() | (ref["referral_date"] <= ref["registration_end"])
    )
    ref = ref[inside]  # the registration spell the referral falls in
    first = ref.groupby("pcn_code")["referral_date"].min()
    for pcn, d in first.items():
        assert str(d) >= t["service_start_by_pcn"][pcn]  # no referral before the service
    ae = read(res, "ae_attendances")
    month = pd.to_datetime(ae["arrival_date"]).dt.to_period("M")
    per = month.value_counts()
    spring20 = per[[pd.Period(f"2020-{m:02d}", "M") for m in (4, 5, 6)]].mean()
    spring19 = per[[pd.Period(f"2019-{m:02d}", "M") for m in (4, 5, 6)]].mean()
    assert spring20 < 0.7 * spring19  # pandemic-like dip hits everyone
    gp = read(res, "gp_appointments")
    gp_month = pd.to_datetime(gp["appointment_date"]).dt.month.value_counts()
    assert gp_month[[12, 1, 2]].mean() > gp_month[[6, 7, 8]].mean()  # winter pressure
    coh = t["att_by_cohort"]
    assert coh  # effects recorded by cohort
    for c, v in coh.items():
        nominal = v["nominal_rate_ratio"]["gp"]
        assert nominal == pytest.approx(0.85 ** t["effects"]["cohort_scale"][c])
        assert nominal <= v["rate_ratio_gp"] < 1.0
    months = t["att_by_event_month"]
    assert months[1]["rate_ratio_gp"] > months[6]["rate_ratio_gp"] > months[13]["rate_ratio_gp"]


def test_progress_bar_runs(tmp_path):
    res = generate("demo", persons=300, seed=1, out=tmp_path, progress=True)
    assert res.rows["population"] == 300


def test_vectorised_nhs_check_matches_reference():
    from spevidence.identity import is_valid_nhs_number

    rng = np.random.default_rng(0)
    values = [f"{x:010d}" for x in rng.integers(0, 10**10, size=3000)]
    values += ["9434765919", "9434765918", "943476591", "94347659190", "abcdefghij", ""]
    got = is_valid_nhs_number(np.array(values, dtype=object))
    assert got.tolist() == [nhs_ok(v) for v in values]
    assert got.sum() > 200  # about 1 in 11 random numbers is valid


def test_truth_holds_no_identifiers(demo, tmp_path):
    text = demo.files["truth"].read_text()
    assert not re.search(r"\b999\d{7}\b", text)
    kent = generate("kent-ae", persons=300, seed=1, out=tmp_path)
    assert not re.search(r"\b[0-9a-f]{32}\b", kent.files["truth"].read_text())


def test_re_registration_spells(tmp_path):
    res = generate("kent-ae", persons=4000, seed=2, out=tmp_path)
    pop = read(res, "population")
    n_re = res.truth["population"]["rejoiners"]
    assert n_re > 20
    assert len(pop) == 4000 + n_re == res.truth["population"]["population_rows"]
    assert pop["person_id"].nunique() == 4000
    pop = pop.assign(
        start=pd.to_datetime(pop["registration_start"]),
        end=pd.to_datetime(pop["registration_end"]).fillna(pd.Timestamp("2200-01-01")),
    )
    multi = pop[pop["person_id"].duplicated(keep=False)].sort_values(["person_id", "start"])
    gaps = multi.groupby("person_id").apply(
        lambda d: (d["start"].iloc[1] - d["end"].iloc[0]).days, include_groups=False
    )
    assert (gaps > 30).all() and (gaps <= 366).all()
    # every event falls inside one of the person's spells
    spells = pop[["person_id", "start", "end"]]
    for name in ["referrals", "gp_appointments", "ae_attendances", "admissions"]:
        df = read(res, name)
        df = df.assign(d=pd.to_datetime(df[TABLES[name].date_column]), row=np.arange(len(df)))
        m = df[["row", "person_id", "d"]].merge(spells, on="person_id")
        inside = ((m["d"] >= m["start"]) & (m["d"] <= m["end"])).groupby(m["row"]).any()
        assert inside.all() and len(inside) == len(df), name
    # people who rejoin are out of the data during the gap
    re_ids = set(multi["person_id"])
    gp = read(res, "gp_appointments")
    assert gp["person_id"].isin(re_ids).any()


def test_poisson_sampler_matches_numpy():
    from scipy import stats

    from spevidence.synthetic._engine import poisson

    rng = np.random.default_rng(11)
    for lam in (0.0, 0.05, 0.7, 4.0, 25.0, 60.0):
        x = poisson(rng, np.full(40_000, lam))
        assert x.mean() == pytest.approx(lam, abs=4 * np.sqrt(max(lam, 1e-9) / 40_000) + 1e-12)
        if lam > 0:
            assert x.var() == pytest.approx(lam, rel=0.05)
    lam = 2.5
    x = poisson(rng, np.full(100_000, lam))
    k = np.arange(10)
    observed = np.array([(x == i).sum() for i in k])
    expected = stats.poisson.pmf(k, lam) * len(x)
    assert stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue > 1e-4


@pytest.mark.parametrize("seed", range(5))
def test_event_placement_avoids_registration_gap(seed):
    from spevidence.synthetic._engine import place, span

    rng = np.random.default_rng(seed)
    m = 20_000
    a = rng.integers(0, 40, m)
    b = a + rng.integers(-2, 40, m)
    g0 = rng.integers(-5, 60, m)
    g1 = g0 + rng.integers(-1, 30, m)  # g1 < g0 means no gap
    n_ok = span(a, b, g0, g1)
    brute = np.array(
        [
            sum(1 for d in range(x, y + 1) if not g <= d <= h)
            for x, y, g, h in zip(a[:500], b[:500], g0[:500], g1[:500], strict=True)
        ]
    )
    assert (n_ok[:500] == brute).all()
    has = n_ok > 0
    day = place(a[has], b[has], rng.random(has.sum()), g0[has], g1[has])
    assert ((day >= a[has]) & (day <= b[has])).all()
    assert not ((day >= g0[has]) & (day <= g1[has])).any()
    # uniform over the allowed days: one specific case checked exactly
    aa, bb, gg0, gg1 = (np.full(60_000, v) for v in (0, 9, 3, 5))
    d = place(aa, bb, rng.random(60_000), gg0, gg1)
    counts = np.bincount(d, minlength=10)
    assert (counts[3:6] == 0).all()
    assert counts[[0, 1, 2, 6, 7, 8, 9]].min() > 0.9 * 60_000 / 7


def test_repeat_referrals(tmp_path):
    base = load_scenario("demo")
    sc = base.model_copy(
        update={"referral": base.referral.model_copy(update={"repeat_after_months": 4})}
    )
    res = generate(sc, persons=6000, seed=4, out=tmp_path)
    ref = read(res, "referrals").sort_values(["person_id", "referral_date"])
    c = res.truth["cohort"]
    assert c["referral_rows"] == len(ref) > c["referred"] == ref["person_id"].nunique()
    acc = ref.groupby("person_id")["outcome"].apply(lambda s: (s == "accepted").sum())
    assert acc.max() == 1 and acc.sum() == c["accepted"]
    # nobody is referred again after being accepted, nor within 4 months
    rd = pd.to_datetime(ref["referral_date"])
    same = ref["person_id"].eq(ref["person_id"].shift())
    assert (rd.diff()[same].dt.days >= 3 * 28).all()
    prev_acc = ref["outcome"].shift().eq("accepted") & same
    assert not prev_acc.any()
    # the truth's event months count from the accepted referral
    assert res.truth["att_by_event_month"][6]["rate_ratio_gp"] == pytest.approx(0.85, abs=1e-9)


def test_true_rate_ratio_weights_months_by_expected_counts() -> None:
    from spevidence.synthetic import true_rate_ratio

    # month 0: 100 person-months, without service 0.5 a month (50 expected), RR 0.8 -> att -0.1
    # month 1: 300 person-months, 0.2 a month (60 expected), RR 0.5 -> att -0.1
    # month 2 is outside a 2-month window
    truth = {
        "att": {"gp": {"rate_ratio": 0.9}},
        "att_by_event_month": [
            {"event_month": 0, "person_months": 100, "rate_ratio_gp": 0.8, "att_gp": -0.1},
            {"event_month": 1, "person_months": 300, "rate_ratio_gp": 0.5, "att_gp": -0.1},
            {"event_month": 2, "person_months": 300, "rate_ratio_gp": 0.1, "att_gp": -0.5},
        ],
    }
    assert true_rate_ratio(truth, "gp", 2) == pytest.approx((0.8 * 50 + 0.5 * 60) / 110)
    assert true_rate_ratio(truth, "gp", 1) == pytest.approx(0.8)
    null = {
        "att": {"gp": {"rate_ratio": 1.0}},
        "att_by_event_month": [
            {"event_month": 0, "person_months": 10, "rate_ratio_gp": 1.0, "att_gp": 0.0}
        ],
    }
    assert true_rate_ratio(null, "gp", 12) == 1.0
