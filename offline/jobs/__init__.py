"""Training jobs over a prepared dataset: M2GRL (``train``), the diversity metric model (``diversity``),
and what ``build-index`` adds beside the model (the co-occurrence channel, the cold items). Import
``offline.data`` and ``offline.baselines`` only."""
