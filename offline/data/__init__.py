"""Data preparation: raw logs -> cleaned events, sessions, one graph per view, sequences, splits
(``prepare``), plus the synthetic log generator. Imports nothing else of ``offline``."""
