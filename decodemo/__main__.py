import sys

from decodemo.cli import main

sys.exit(main())
