"""Talking to Clickatell: HTTP transport, the cache-backed session and the typed client.

Knows nothing of the package's models; the domain services build on it.
"""
