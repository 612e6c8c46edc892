"""`python3 -m dpu_app ...`: the app's command line (app.py)."""
import sys

from .app import main

sys.exit(main())
