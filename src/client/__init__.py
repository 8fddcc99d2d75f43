"""chat-client: npyscreen TUI and line mode."""
