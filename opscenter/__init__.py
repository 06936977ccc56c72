"""Joey's Ops center: publishes and edge locations (the seeds' REST API), edge enrollment, edge log
ingestion and export. Run it as `joey-ops`; talk to it with ops.client.OpsClient. See docs/ops.md."""
