"""``python -m spiketrum.app``: the command line (also for ``torchrun ... -m spiketrum.app``)."""
import sys

from .cli import main

sys.exit(main())
