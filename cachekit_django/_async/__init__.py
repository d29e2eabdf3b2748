"""Written once as async code; the sync twins in ../_sync are generated (scripts/gen_sync.py)."""
