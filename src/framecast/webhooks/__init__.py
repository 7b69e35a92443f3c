"""Webhooks: each request's status changes pushed to the URL its client gave at submit.

The parts, in the order a delivery meets them:

- :mod:`.targets`: the ``?webhook=`` URL, checked at submit against the image URLs' address
  policy (no loopback, private, metadata addresses);
- :mod:`.outbox`: a ``webhook_deliveries`` row written inside the transaction of the status
  change it reports, so a change and its delivery commit or vanish together;
- :mod:`.store`: those rows claimed under a lease, retried with back-off, kept when done;
- :mod:`.sender` and :mod:`.signing`: one signed POST (Standard Webhooks), the address checked
  again at the moment of connecting;
- :mod:`.dispatcher`: the loop that ties them together, in ``framecast serve`` and in
  ``framecast webhooks dispatch``.
"""
