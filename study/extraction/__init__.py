"""Frozen features of a unit's images, compiled and sharded over the local devices (extract),
and the features stage across processes or hosts (distributed)."""
