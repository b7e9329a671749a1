"""The node's update client: format rules, a verifier without I/O, the key set, the download."""
