"""Synthetic ICB generator: extracts with a known truth (DESIGN.md section 4, issue 4).

>>> from spevidence.synthetic import generate, list_scenarios
>>> res = generate("demo", persons=5000, seed=1, out="out/demo-data")  # doctest: +SKIP
"""

from spevidence.synthetic._generate import SyntheticICB, arrow_schema, generate
from spevidence.synthetic._plot import around_referral, plot_around_referral
from spevidence.synthetic._scenario import Scenario, ScenarioError, list_scenarios, load_scenario
from spevidence.synthetic._truth import true_effect_by_quarter, true_rate_ratio

__all__ = [
    "Scenario",
    "ScenarioError",
    "SyntheticICB",
    "around_referral",
    "arrow_schema",
    "generate",
    "list_scenarios",
    "load_scenario",
    "plot_around_referral",
    "true_effect_by_quarter",
    "true_rate_ratio",
]
