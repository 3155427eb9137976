"""The shipped run configurations, one YAML file per domain (package data, found with importlib.resources)."""
