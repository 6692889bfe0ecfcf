import signal

# A reload signal that comes while the program is still starting waits for the handler
# serve installs, instead of ending the process (systemctl reload right after start).
signal.signal(signal.SIGHUP, signal.SIG_IGN)

from gateway.cli.main import main  # noqa: E402 - after the signal is safe

raise SystemExit(main())
