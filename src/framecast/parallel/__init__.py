"""One request on several processes (one per GPU): the process group and how it is started.

:mod:`framecast.parallel.group` starts and joins the processes; how a transformer's sequence is
split lives with the engines, written once for both Hunyuan models
(:mod:`framecast.engines.hunyuan.parallel`, :mod:`framecast.engines.hunyuan.group`).
"""
