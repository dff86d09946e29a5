"""The ``project-manager`` command line: thin Typer commands over queue_core."""
