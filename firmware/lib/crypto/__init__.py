"""Cryptography MicroPython lacks: SHA-512, Ed25519 verification, HMAC-SHA256."""
