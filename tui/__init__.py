"""Grain de Saga's full-screen terminal app (``grain-tui``).

It drives :mod:`saga_model` only through its public API: stories stream from model threads,
training runs in its own process that the dashboard follows through ``metrics.jsonl``.
"""
