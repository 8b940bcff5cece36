"""Shared pytest fixtures and tier gates."""
