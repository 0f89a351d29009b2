import sys

from oodida.cli import main

sys.exit(main())
