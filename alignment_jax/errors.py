"""The one exception type for bad user input, and how the command lines tell other failures apart."""


class InputError(ValueError):
    """Bad user input, in one line naming the file or field, the problem and the fix.

    The CLI prints the message (no traceback) and exits with status 2.
    """


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its type's name when it has none), at most `limit` characters."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is running out of memory: XLA's RESOURCE_EXHAUSTED on a device, or the host's."""
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in str(error)
