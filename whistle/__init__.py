"""Whistle's shared kernel: domain vocabulary, policy, settings and read-model tables.

Nothing here imports from workflows/, activities/ or api/; those layers stand on this one.
"""
