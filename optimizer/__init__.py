"""ratchet: the optimization loop that cannot be fooled by its own search."""
__version__ = "0.1.0"
