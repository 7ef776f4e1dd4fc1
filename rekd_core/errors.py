"""User-facing errors: each carries one clear line for the CLI and the dashboard."""


class RekdError(Exception):
    """A problem the user can fix (bad input, wrong path, mismatched models). Never a bug."""


class ConfigError(RekdError):
    """An invalid option or combination of options."""


class DataError(RekdError):
    """A dataset spec, file or input that cannot be read."""


class CheckpointError(RekdError):
    """A checkpoint directory that is missing, corrupt, incomplete or incompatible."""
