"""The ``sus2md`` command line: a shell over library functions.

Every command parses its arguments, calls one library function and prints a summary.  Errors
derived from :class:`sus2md.errors.Sus2mdError` are printed as one line and exit with their code
(2 usage, 1 runtime); ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from sus2md.errors import Sus2mdError

app = typer.Typer(
    name="sus2md",
    help="SUS2-MLIP potentials: evaluate, train, compile for OpenMM, run MD protocols, analyze.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines COMMANDS: a list of functions registered as sub-commands (name = function
# name with '_' -> '-', unless the function has a ``cli_name`` attribute).
COMMAND_MODULES = (
    "sus2md.commands.core",
    "sus2md.commands.train",
    "sus2md.commands.engine",
    "sus2md.commands.run",
    "sus2md.commands.interop",
    "sus2md.commands.reliability",
    "sus2md.commands.learn",
    "sus2md.commands.bench",
    "sus2md.commands.schema",
)

_DEBUG = {"on": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    _DEBUG["on"] = debug or bool(os.environ.get("SUS2MD_DEBUG"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _register() -> None:
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:
                continue
            raise
        for fn in getattr(mod, "COMMANDS", []):
            name = getattr(fn, "cli_name", fn.__name__.replace("_", "-"))
            app.command(name)(fn)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sus2md`` console script."""
    _register()
    try:
        # standalone mode: typer handles usage errors (exit 2), --help and Exit codes itself
        app(args=argv, prog_name="sus2md")
    except SystemExit as e:
        if e.code not in (0, None):
            raise  # usage errors (2) and explicit exit codes
    except Sus2mdError as e:
        if _DEBUG["on"]:
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
