"""Device-facing API (/device/v1): requests signed by the nodes, one module per resource."""
