"""``python -m localpers``: the same as the ``localpers`` command.

Example::

    python -m localpers --help
"""

from .cli import main

if __name__ == "__main__":
    main(prog_name="localpers")
