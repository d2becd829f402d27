"""The HTTP edge: Flask routes, request validation, Prometheus metrics; no model code."""
