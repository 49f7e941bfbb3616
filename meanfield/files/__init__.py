"""One module per kind of output file, each the only owner of its layout.

- :mod:`meanfield.files.simulation`: ``meanfield simulate`` files
  (:class:`~meanfield.files.simulation.SimulationResult`);
- :mod:`meanfield.files.theory`: ``meanfield theory`` files
  (:class:`~meanfield.files.theory.TheoryResult`);
- :mod:`meanfield.files.comparison`: ``meanfield compare`` files;
- :mod:`meanfield.files.linear`: ``meanfield linear`` files;
- :mod:`meanfield.files.crossover`: ``meanfield crossover`` files;
- :mod:`meanfield.files.sweep`: the merged file of ``meanfield sweep`` (``sweep.nc``);
- :mod:`meanfield.files.study`: the ``study.h5`` of ``meanfield sweep --study``;
- :mod:`meanfield.files.checkpoint`: the simulator's checkpoints;
- :mod:`meanfield.files.outputs`: what an existing output holds, so that no command overwrites
  a result by accident.

Each module's ``write_*`` takes the object its ``read_*`` returns. The HDF5 mechanics they share
(netCDF4-valid dimension scales, compression, provenance, atomic writes) live in
:mod:`meanfield.io`.
"""
