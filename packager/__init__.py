"""Joey packager: pipeline spec -> OCI pipeline artifact -> registry, chart and publish record."""

__version__ = "0.1.0"
