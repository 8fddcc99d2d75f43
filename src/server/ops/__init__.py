"""The operator's side: the command line, the configuration and its file."""
