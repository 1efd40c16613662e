"""The gsreg version, in one place: the package, gsreg.save and pyproject.toml read it."""

__version__ = "0.1.0"
