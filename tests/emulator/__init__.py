"""Host-side tests of the emulated lamppost's world, models and scenario."""
