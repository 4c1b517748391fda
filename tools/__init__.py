"""Maintenance tools (not needed to use the models)."""
