"""The `neu-gateway` command."""
