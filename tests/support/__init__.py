"""What the tests share: real servers to start, raw HTTP to read, clocks and ports."""
