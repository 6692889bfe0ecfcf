"""gateway.yaml: its schema, the resolved config, loading it, and the config in force."""
