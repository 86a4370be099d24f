"""Benchmarks that print figures (not tests): see ``bench/intake.py``."""
