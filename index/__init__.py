"""Index building, validation, publishing and retrieval.

- ``index.config.IndexConfig`` and ``index.registry`` (index types by name) configure a build;
- ``index.build.build_index`` turns a model (+ metric) folder into a validated version folder;
- ``index.publish`` moves ``CURRENT`` (publish, rollback, prune, list);
- ``index.serving.ServingIndex`` answers neighbour lookups; ``index.loader.load_current`` opens CURRENT.

Nothing is imported here so that ``import index`` stays cheap (FAISS loads with the submodules).
"""
