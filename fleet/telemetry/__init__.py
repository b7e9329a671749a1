"""Telemetry for the data team: metric catalogue, ingest, query, aggregates, export, live stream."""
