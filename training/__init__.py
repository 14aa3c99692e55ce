"""Offline training scripts (not part of the installed package)."""
