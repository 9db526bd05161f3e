"""The product's CDK constructs, one concern per module.

Named ``hpc_constructs`` rather than the design card's ``constructs/``: that name belongs to the
``constructs`` library every CDK import uses. jsii extends that package's ``__path__``, so a local
``constructs/`` folder would either shadow the library (with ``__init__.py``) or merge into it
(without), making ``constructs.network`` look like library code and breaking whenever the library
is imported before the repo root is on ``sys.path``. A distinct name imports the same way everywhere.
"""
