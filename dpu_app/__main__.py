"""`python3 -m dpu_app ...`: the app's command line (app.py)."""
import signal
import sys

from .app import main


def _stop(signum, frame):
    """SIGTERM (kill, systemd) and SIGHUP (the ssh session of make board-run closed) end the
    app the way Ctrl-C does: the loop stops, the camera and the viewer are released and the
    run's summary is printed, instead of a bare 'Terminated'."""
    raise KeyboardInterrupt


for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _stop)

sys.exit(main())
