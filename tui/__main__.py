"""``python -m tui``: the same as the ``grain-tui`` command."""

from tui.app import run

run()
