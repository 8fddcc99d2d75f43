"""The network side: the epoll loop, sockets, TLS, framing of bytes into payloads, and the inbox
other threads use to ask the loop for I/O. Only the loop thread touches a socket.
"""
