"""Command-line tools: ``grain-train`` and ``grain-generate``."""
