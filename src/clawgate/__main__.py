import sys

from clawgate.cli.main import main

sys.exit(main())
