"""The one exception type for bad user input."""


class InputError(ValueError):
    """Bad user input, in one line naming the file or field, the problem and the fix.

    The CLI prints the message (no traceback) and exits with status 2.
    """
