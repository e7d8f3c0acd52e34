"""Benchmarks of single operations (``ganbench bench attention``)."""
