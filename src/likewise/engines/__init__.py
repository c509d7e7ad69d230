"""Search engines: the exact + HNSW engine of one index, its metadata columns and snapshots."""

from .engine import EngineParams, Plan, VectorEngine

__all__ = ["EngineParams", "Plan", "VectorEngine"]
