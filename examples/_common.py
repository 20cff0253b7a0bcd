"""Shared by the numbered examples (they are scripts, so this folder is on ``sys.path``)."""
import importlib.util
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sibling(name: str):
    """Import examples/<name>.py (file names starting with a digit are not importable by name)."""
    spec = importlib.util.spec_from_file_location(name.replace("0", "ex0", 1), HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
