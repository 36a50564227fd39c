"""Chronicle: a static site generator whose posts carry live experiment data."""

__version__ = "0.1.0"
