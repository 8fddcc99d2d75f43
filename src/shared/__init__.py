"""Sans-IO core of the chat protocol (version 1): framing, messages, states.

Nothing here touches a socket. The server and the client feed bytes in and
take events and bytes out, each from its own I/O loop (the h11 model).
"""
