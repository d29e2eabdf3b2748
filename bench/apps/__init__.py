"""Small web apps served by real servers for ``bench/bench_http.py`` (one contender each)."""
