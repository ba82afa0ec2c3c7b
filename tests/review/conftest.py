from __future__ import annotations

import pytest

from reviewkit import make_season


@pytest.fixture
def season(tmp_path):
    """(source, registry, result store, backend) of `reviewkit.make_season`, run once."""
    return make_season(tmp_path)
