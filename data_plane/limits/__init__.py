"""Usage-plan limits: policies (throttle + quota), their stores (memory, Redis) and response headers.

Importing the package imports nothing: the control plane uses :mod:`data_plane.limits.periods`
without pulling in a store.
"""
