import sys

from .batch import main

sys.exit(main())
