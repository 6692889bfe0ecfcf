from gateway.runtime import signals

# A reload signal that comes while the program is still starting waits for the handler
# serve installs, instead of ending the process (systemctl reload right after start).
signals.ignore_reloads()

from gateway.cli.main import main  # noqa: E402 - after the signal is safe

raise SystemExit(main())
