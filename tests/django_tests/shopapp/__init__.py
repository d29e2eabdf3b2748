"""A small shop for the Django adapter's tests: models with an m2m, and views for every rule."""
