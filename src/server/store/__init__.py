"""The message store seam: history, offline queues and message ids; the service that runs a store
on its own threads, and the SQLite implementation of a server alone.
"""
