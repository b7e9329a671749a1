"""Lamplighter fleet server: provisioning, device auth, check-in, telemetry, releases, rollouts."""
