"""A minimal Django project for the HTTP benchmark (settings, urls, views in this package)."""
