"""One server on many machines: the parts that put a node's state in Redis (docs/cluster.md)."""
