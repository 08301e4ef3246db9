"""Benchmarks of training, generation and TUI start-up speed (see docs/performance.md)."""
