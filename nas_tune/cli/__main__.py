import sys

from nas_tune.cli import main

sys.exit(main())
