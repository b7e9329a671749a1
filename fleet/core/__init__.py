"""The server's foundations: settings, database, cryptography and logging (no HTTP, no domain)."""
