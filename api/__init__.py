"""The FastAPI app: JSON API under /api/v1, one shared Temporal client."""
