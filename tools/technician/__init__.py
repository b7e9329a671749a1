"""Tools for the technician at the pole: flashing, provisioning, factory images, monitor."""
