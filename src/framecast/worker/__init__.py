"""Workers: the processes that run the model.

- :mod:`.loop`: claim a request under a lease, run the engine, encode, store, finish (the final
  status written in one place);
- :mod:`.engine_loading`: loading a worker's engines, with retries for what can recover;
- :mod:`.group`: one worker made of a process per GPU (``worker --gpus``, ``generate
  --parallel``), its engine split across them;
- :mod:`.scratch`: each worker's scratch folder, and clearing those dead workers left;
- :mod:`.health`: the GPU image's health check, a worker's heartbeat read back.
"""
