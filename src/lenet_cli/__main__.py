import sys

# `python -m` puts the working folder first on sys.path, so a config's `class_path: evilmod.X` would import
# ./evilmod.py (or a ./yaml.py shadow a dependency); the `lenet` script does not. Dropped here, before any
# other import. To import from the working folder, ask for it: PYTHONPATH=. python -m lenet_cli ...
if __name__ == "__main__" and not sys.flags.safe_path:
    del sys.path[0]

from lenet_cli.cli.main import main

if __name__ == "__main__":
    main()
