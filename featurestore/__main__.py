"""`python -m featurestore COMMAND STORE …` — look inside a store."""
import sys

from featurestore.cli import main

sys.exit(main())
