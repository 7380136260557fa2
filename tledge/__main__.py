"""`python -m tledge …` (also what `torchrun -m tledge train …` runs)."""

import sys

from tledge.cli import main

sys.exit(main())
