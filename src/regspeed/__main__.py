"""``python -m regspeed``: the same as the ``regspeed`` command."""

from regspeed.cli import app

app()
