import gc
import sys

from .cli import main

rc = main()
# Nothing is left to do but exit: without this, the interpreter's last garbage collection over every
# loaded module (torch, transformers) took seconds, which a Ctrl-C user waits for.
gc.freeze()
sys.exit(rc)
