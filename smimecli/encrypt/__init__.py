"""Encryption: one message (message), one library request (request), many messages (batch)."""
