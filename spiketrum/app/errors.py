"""Exceptions the application layer raises and the command line words for the user (kept light: no torch)."""
from __future__ import annotations


class OutputExists(FileExistsError):
    """An output that already holds finished results would be replaced; the caller must ask for it (``force``).

    The message is in library words; the command line adds its own flag (``--force``).
    """

    def __init__(self, path, what, hint="write elsewhere, or pass force=True to replace it"):
        self.path, self.what, self.hint = str(path), what, hint
        super().__init__(f"{self.path}: already holds {what}; {hint}")
