import sys

from diffcd.cli import main

sys.exit(main())
