"""Usage metering: per-customer request counts, spooled to disk and delivered to the control plane."""
