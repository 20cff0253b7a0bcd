import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SUS2MD_SHARED", ROOT.parent / "shared"))
# compiled model steps (sus2md.export.aot) are cached per model shape; keep the tests' cache in the
# checkout (build/ is git-ignored) rather than the user's ~/.cache, and share it across test runs
os.environ.setdefault("SUS2MD_CACHE_DIR", str(ROOT / "build" / "test-cache"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared, or skip the test (with a reason) when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not found: tests that need the shared reference data skip without ../shared")
    return p


@pytest.fixture
def shared():
    return shared_path
