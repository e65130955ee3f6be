"""Every public name resolves to a real callable or class."""

from __future__ import annotations

import spevidence


def test_every_public_name_resolves() -> None:
    for name in spevidence.__all__:
        obj = getattr(spevidence, name)
        assert obj is not None, name
        if name not in ("__version__",):
            assert callable(obj), name


def test_subpackages_are_reachable() -> None:
    assert spevidence.did.two_by_two is spevidence.two_by_two
    assert spevidence.sroi.evaluate is spevidence.sroi_evaluate
