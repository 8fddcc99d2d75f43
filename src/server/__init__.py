"""chat-server: the epoll loop, the worker pool, the user store."""
