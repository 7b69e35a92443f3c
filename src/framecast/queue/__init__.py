"""The request lifecycle: the request table is the queue.

- :mod:`.states`: the state machine, written down once;
- :mod:`.jobs`: the store and its one transition function (every status change is a guarded
  UPDATE there), claims under a renewable lease; :mod:`.job_stores` builds it with the
  listeners every change must carry (the webhook outbox);
- :mod:`.outcomes` and :mod:`.results`: how an attempt ended, and what a completed request stored;
- :mod:`.listing`: a key's requests, a page at a time;
- :mod:`.wakeup` and :mod:`.status_watch`: waiting for changes (NOTIFY or polling), for idle
  workers and for status streams;
- :mod:`.registry`: worker heartbeats (who is alive, what it serves);
- :mod:`.retention`: deleting old inputs and outputs;
- :mod:`.request_totals`: the totals ``/metrics`` reports, kept as requests change state.
"""
