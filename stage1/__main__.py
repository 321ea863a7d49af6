import sys

from stage1.commands.main import main

sys.exit(main())
