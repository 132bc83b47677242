"""The package version, in a module of its own so that any layer can read it without importing
the package's front door (`ebjdat_engine/__init__` reaches into `eval`)."""

__version__ = "0.1.0"
