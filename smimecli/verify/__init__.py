"""Verification: checking S/MIME signatures (message) and the verdicts they give (verdicts)."""
