import os
import sys

from .cli import main
from .store.files import ABANDONED

code = main()
if ABANDONED:  # a history file deleted or replaced under this process: closing its connections would write to it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
