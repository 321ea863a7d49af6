import sys

from stage1.cli import main

sys.exit(main())
