"""The ``framecast`` command.

- :mod:`.main`: the command and its local subcommands (serve, worker, keys, generate, weights,
  db, models);
- :mod:`.serve`: ``framecast serve``, the API with worker processes beside it;
- :mod:`.devkey`: the development key and the example ``make run`` prints;
- :mod:`.remote` and :mod:`.progress`: submit/status/result/cancel/list against a running
  server, with a progress display;
- :mod:`.webhooks`: ``framecast webhooks`` (a dispatcher on its own, the outbox).
"""
