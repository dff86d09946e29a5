"""The supervisor process's own code: standard library only, importable on its own.

``queue_core.supervisor`` runs :mod:`.main` as ``python -I -S -c ...`` with this package's
parent folder first on ``sys.path``, so that the process imports this package alone, never
``queue_core`` (whose imports it does not need: every fork of it copies what it imported).
Its modules therefore import each other relatively, and nothing outside the standard library.

* :mod:`.wire`: the messages between the coordinator, the supervisor and its keepers;
* :mod:`.proctree`: the process table, trees, groups, and signals that cannot hit a reused pid;
* :mod:`.keeper`: the process that runs one task's agent at a time and outlives none of it;
* :mod:`.main`: the supervisor's loop.
"""
