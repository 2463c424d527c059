"""Tollgate data plane: the stateless proxy worker. Never imports control_plane."""

__version__ = "0.1.0"
