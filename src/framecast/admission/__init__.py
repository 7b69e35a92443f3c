"""Who may submit, and how much: what the API checks before a request enters the queue.

- :mod:`.keys`: API keys, stored hashed (or given in ``FRAMECAST_API_KEYS``);
- :mod:`.quotas` and :mod:`.rates`: per-key limits on requests in flight and on submits per
  window, counted in the database so they hold across API nodes;
- :mod:`.idempotency`: ``Idempotency-Key``, the same key and body making one request.
"""
