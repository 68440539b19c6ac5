import sys

from ndpatch.cli import main

sys.exit(main())
