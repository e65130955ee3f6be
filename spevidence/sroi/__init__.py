"""SROI stage (DESIGN.md section 7): value DiD effects, discount, sensitivity, Monte Carlo.

Public API::

    from spevidence.sroi import evaluate, from_did, unit_costs, link_worker_inputs
    outcomes = from_did(did_effects, persons=800, duration_years=2)
    inputs = link_worker_inputs(wte=3, price_year="2022/23", management_rate=0.15)
    res = evaluate(outcomes, inputs, discount=0.035, n_sims=5000, seed=1)
    res.glance(); res.tidy(); res.sensitivity(); res.plot(kind="tornado")
"""

from spevidence.sroi._build import ae_cost_item, cost_per_person, from_did, link_worker_inputs
from spevidence.sroi._costs import check_unit_costs, unit_costs, uprating_index
from spevidence.sroi._engine import SROIResult, evaluate
from spevidence.sroi._plots import plot_tables

__all__ = [
    "SROIResult",
    "ae_cost_item",
    "check_unit_costs",
    "cost_per_person",
    "evaluate",
    "from_did",
    "link_worker_inputs",
    "plot_tables",
    "unit_costs",
    "uprating_index",
]
