"""Fixtures of the stage tests: the tiny world of tests/stages/world.py in a temporary folder."""

import pytest

from tests.stages.world import World, make_world


@pytest.fixture
def world(tmp_path) -> World:
    return make_world(tmp_path / "world")
