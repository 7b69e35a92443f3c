"""One request on several processes (one per GPU): the process group and how it is started.

:mod:`framecast.parallel.group` starts and joins the processes (``framecast worker --gpus`` and
``generate --parallel`` start them through :mod:`framecast.worker.group`); how a transformer's sequence is
split lives with the engines, written once for both Hunyuan models
(:mod:`framecast.engines.hunyuan.parallel`, :mod:`framecast.engines.hunyuan.group`).
"""
