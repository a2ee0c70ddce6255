"""The model families, one folder each: its spec (pure pydantic, in the folder's `__init__`), its
LightningModule, its losses as pure functions, its own tasks and report hooks, and its entry
(`plugin.py`), registered through the `pipeline.plugins` entry points (see `pipeline.plugins`)."""
