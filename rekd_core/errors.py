"""User-facing errors: each carries one clear line for the CLI and the dashboard."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span many lines), else its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class RekdError(Exception):
    """A problem the user can fix (bad input, wrong path, mismatched models). Never a bug."""


class ConfigError(RekdError):
    """An invalid option or combination of options."""


class DataError(RekdError):
    """A dataset spec, file or input that cannot be read."""


class CheckpointError(RekdError):
    """A checkpoint directory that is missing, corrupt, incomplete or incompatible."""
