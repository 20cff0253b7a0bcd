"""CLI sub-commands, grouped by topic; each module exports ``COMMANDS``."""
