import sys

from neupims.cli import main

sys.exit(main())
