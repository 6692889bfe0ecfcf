"""The pure core: the platform's rules as data and functions. Stdlib only, no I/O."""
