import sys

from golfpack.cli import main

sys.exit(main())
