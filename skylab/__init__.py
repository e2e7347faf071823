"""Skylab."""
