"""HTTP edge of the control plane: thin routers, dependency wiring, domain-error → status mapping."""
