"""The one exception type that user-facing entry points turn into a clean message and exit code 2."""


class UserError(Exception):
    """Bad input from the user: the message is one sentence saying what was wrong and how to fix it."""
