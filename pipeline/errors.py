"""Errors meant for the person at the terminal: the CLI prints them as one message, no traceback."""


class PipelineError(Exception):
    """Something the user can fix (missing data, a missing upstream stage, a bad file).
    The message says what is wrong and what to do."""
