"""Baselines of table 2, one module each, behind one registry (:mod:`offline.baselines.registry`)."""
