"""The wire format: the bodies framecast's API answers, written once.

The API declares them as its routes' response models (so ``/openapi.json`` types every
answer), the queue builds them (:mod:`framecast.queue.views`), and :mod:`framecast.client`
parses answers with them. This package imports nothing else of framecast, only pydantic: the
client stays light, and every layer may import it.

- :mod:`.requests`: a request's status, result, cancel answer, a page of requests, a submit's
  answer; :class:`~.requests.Status`, the states a request goes through;
- :mod:`.errors`: the error body every 4xx and 5xx has, and :class:`~.errors.ErrorCode`,
  every code framecast sends.
"""
