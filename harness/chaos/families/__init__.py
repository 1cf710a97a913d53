"""The built-in fault families, one package each: ``network``, ``proxy``, ``process``, ``stress``
and ``kubernetes``.

Each package's ``params`` module declares its kinds as scenario models, and its ``__init__``
holds ``FAMILY``, the :class:`~harness.chaos.family.FaultFamily` that ``pyproject.toml``
registers in the ``harness.fault_families`` entry-point group; the other modules of a package
are its implementation, imported when a hook first needs them.
"""
