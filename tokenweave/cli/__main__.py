import sys

from tokenweave.cli import main

sys.exit(main())
