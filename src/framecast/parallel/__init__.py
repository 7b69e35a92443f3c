"""One request on several processes (one per GPU): the process group and how it is started.

:mod:`framecast.parallel.group` starts and joins the processes; the model-specific part (how
the HunyuanVideo transformer's sequence is split) lives with its engine
(:mod:`framecast.engines.hunyuan.parallel`).
"""
