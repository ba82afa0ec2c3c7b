"""The base of every error meant for the user: printed as a message, never as a traceback."""


class DeepfauneError(Exception):
    """Something the user can fix (a missing model, a bad source, a wrong option); the message says what."""


class RunError(DeepfauneError):
    """A run cannot start or finish (bad source, models missing...): a message for the user, not a traceback."""


class RunInterrupted(RunError):
    """Ctrl-C: what was computed is stored; the same command resumes."""


class PluginError(DeepfauneError):
    """A plugin cannot be used as registered (a name taken twice, a method missing, an unknown name asked for)."""


class HostError(DeepfauneError):
    """A host's source or output is unusable (a .ddb that is not Timelapse's, a package that breaks its schema):
    the message names the file and the problem. Hosts raise it, or a subclass of their own."""


class BackendError(DeepfauneError):
    """A backend cannot compute (a model file that breaks its contract, a device that cannot run it)."""
