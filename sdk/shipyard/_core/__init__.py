"""Core of shipyard: configuration, workspace paths, errors, lineage names, audit log.

Nothing in here imports a heavy third-party package at module import time.
"""
