"""Snapshot building (database → :class:`data_plane.snapshot.Snapshot`) and distribution to workers."""
