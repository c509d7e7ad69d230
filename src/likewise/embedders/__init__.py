"""Embedders: turn texts, records, items and images into vectors (placeholder during development)."""
