"""The base of every error meant for the user: printed as a message, never as a traceback."""


class DeepfauneError(Exception):
    """Something the user can fix (a missing model, a bad source, a wrong option); the message says what."""


class RunError(DeepfauneError):
    """A run cannot start or finish (bad source, models missing...): a message for the user, not a traceback."""


class RunInterrupted(RunError):
    """Ctrl-C: what was computed is stored; the same command resumes."""
