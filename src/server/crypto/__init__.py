"""Keys and sealing: the cipher plugin binding, the sealing scheme every store uses, and the key
file.
"""
