"""``lenet serve``'s parts: request reading (``requests``), the HTTP gateway (``gateway``), the inference
worker (``worker``), process lifetimes (``processes``) and the LitServe set-up (``server``).

Nothing is imported here: the inference worker, a spawned process, imports only ``worker`` and what it needs.
"""
