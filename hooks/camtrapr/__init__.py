"""camtrapr host: its adapter is `host`; the other modules are its format, one job each."""
