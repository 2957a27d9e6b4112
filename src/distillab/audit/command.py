"""CLI wiring for this stage (filled in by the stage's owner)."""


def register(subparsers) -> None:
    """Add this stage's sub-commands to the ``distillab`` parser."""
