"""The engine's I/O, written once as async code; ``_sync/`` is generated from it."""
