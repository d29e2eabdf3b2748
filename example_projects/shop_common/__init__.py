"""Code both example shops share: the deterministic catalogue and the ``/cachekit/`` page.

Nothing here is cachekit API: it is the scaffolding around the parts a user would copy.
"""
