"""The gateway's own interface, described for its callers (OpenAPI)."""
