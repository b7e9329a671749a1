"""HTTP routers: the device-facing API and the operator/data API, kept apart."""
