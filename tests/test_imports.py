"""What a gateway without Redis loads: redis-py costs about 10 MB of memory per worker."""

from __future__ import annotations

import subprocess
import sys


def test_a_gateway_without_redis_never_imports_redis_py() -> None:
    code = "import sys, gateway.cli.main, gateway.runtime.app; print('redis' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"
