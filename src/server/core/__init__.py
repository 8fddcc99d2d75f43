"""The chat core: `User` (one per connection), the route, the hub (who is where), the dispatch of
each connection's mailbox, the worker pool and the native outbound slots.
"""
