"""Joey's Ops center: publishes and edge locations (the seeds' REST API), edge enrollment, edge log
ingestion and export. Run it as `joey-ops`; talk to it with joey.opsclient.OpsClient. See docs/ops.md."""
