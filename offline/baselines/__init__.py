"""Baselines of table 2 (issue 4), one module each, behind one registry (:mod:`offline.baselines.registry`)."""
