"""The localpers terminal app (Textual). Installed as ``localpers.tui``.

Example::

    from localpers.tui import LocalpersApp
    LocalpersApp(demo=True).run()      # the demo profile, no passphrase
"""

from .app import LocalpersApp, run

__all__ = ["LocalpersApp", "run"]
