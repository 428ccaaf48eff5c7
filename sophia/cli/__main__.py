import sys

from sophia.cli import main

sys.exit(main())
