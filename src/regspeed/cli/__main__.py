"""``python -m regspeed.cli``: the same as the ``regspeed`` command."""

from regspeed.cli import app

app()
