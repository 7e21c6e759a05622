"""Shared types, folder layouts and atomic I/O used by every package (offline, model, index, app)."""
