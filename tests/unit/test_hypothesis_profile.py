"""The hypothesis profile that CI and `make test` run under (tests/conftest.py)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from tests.conftest import EXAMPLES


def test_the_ci_profile_is_reproducible_and_meaningful() -> None:
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.deadline is None
    assert ci.max_examples == EXAMPLES >= 400


def test_dev_draws_new_examples() -> None:
    dev = settings.get_profile("dev")
    assert not dev.derandomize and dev.max_examples == EXAMPLES


def test_ci_is_the_default() -> None:
    if os.environ.get("HYPOTHESIS_PROFILE") or settings.get_current_profile_name() != "ci":
        pytest.skip(f"profile {settings.get_current_profile_name()!r} was asked for")
    assert settings.default.derandomize


def test_the_suites_take_seed_and_database_from_the_profile() -> None:
    from tests.unit import test_hostile, test_privacy

    if not settings.get_current_profile_name().startswith("ci"):  # also ci-with-verbose-verbosity
        pytest.skip(f"profile {settings.get_current_profile_name()!r} was asked for")
    # Their settings keep their example counts and take seed and database from the profile.
    for suite, count in ((test_privacy.PROPERTY, 400), (test_hostile.PROPERTY, 300)):
        assert suite.derandomize and suite.database is None and suite.max_examples == count
