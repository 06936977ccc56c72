"""Joey packager: pipeline spec -> OCI pipeline artifact -> registry, chart and publish record."""
