"""The ``regspeed`` command: a package of thin commands over the layers below (``play``,
``train``, ``spec``, ``study``, ``status``, ``report``, ``watch``, ``export``).

User mistakes (:class:`~regspeed.errors.ConfigError`) end with one line on stderr naming
the option and exit code 2, never a traceback (:func:`regspeed.cli.app.user_errors_exit_cleanly`).
"""

# Importing a command module registers its commands, in this order in `regspeed --help`.
from regspeed.cli import play  # noqa: F401

# isort: split
from regspeed.cli import train  # noqa: F401

# isort: split
from regspeed.cli import study  # noqa: F401
from regspeed.cli.app import app

__all__ = ["app"]
