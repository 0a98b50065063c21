"""Bridges to other frameworks (the only place numformer may import them)."""
