"""The accounts seam: the encrypted users file of a server alone, password hashing off the chat
path, and the failed-login throttle.
"""
