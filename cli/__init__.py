"""The ``meanfield`` command line: thin Click commands over the ``meanfield`` library."""
