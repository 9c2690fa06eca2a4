"""Clickatell's legacy HTTP API as pure data: code tables and reply parsing.

Nothing in this package performs I/O or touches Django models, so every reply
shape can be unit-tested and fuzzed on its own.
"""
