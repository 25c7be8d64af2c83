import sys

from gptfl_hpc.cli import main

sys.exit(main())
