"""The base of every error meant for the user: printed as a message, never as a traceback."""


class DeepfauneError(Exception):
    """Something the user can fix (a missing model, a bad source, a wrong option); the message says what."""
