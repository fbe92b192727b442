"""Test helpers for dra-framework and third-party backends (pytest fixtures for a real Kubernetes)."""
