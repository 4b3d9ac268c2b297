"""``python -m poolkit.cli``: the ``poolkit`` command."""
import sys

from .main import main

sys.exit(main())
