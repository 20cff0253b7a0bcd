"""``sus2md schema protocol|train|learn``: the reference of a configuration schema, as Markdown."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def schema(
    which: str = typer.Argument(..., help="protocol (sus2md run), train (sus2md train) or learn (sus2md learn)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the page to this file (docs/protocol.md, docs/training.md) instead of printing it."),
) -> None:
    """Every field of a protocol, training or learning config: unit, default, allowed values, description."""
    from sus2md.errors import UsageError
    from sus2md.reference import render

    text = render(which)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text)
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
    typer.echo(f"wrote {output}")


COMMANDS = [schema]
